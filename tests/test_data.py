"""Built-in and user data through datasets, the deterministic split, and bad data refused."""
import numpy as np
import pytest
from PIL import Image

from autophagy.config import ConfigError
from autophagy.data import load_real_data, split_pool_reference


def test_split_is_deterministic_and_disjoint():
    pool, ref, val = split_pool_reference(5000, 1000, n_validation=500)
    pool2, ref2, val2 = split_pool_reference(5000, 1000, n_validation=500)
    assert np.array_equal(pool, pool2) and np.array_equal(ref, ref2) and np.array_equal(val, val2)
    assert len(ref) == 1000 and len(val) == 500 and len(pool) == 3500
    assert not set(pool) & set(ref) and not set(pool) & set(val) and not set(ref) & set(val)
    assert set(pool) | set(ref) | set(val) == set(range(5000))
    assert not np.array_equal(ref, split_pool_reference(5000, 1000, seed=1)[1])


def _assert_three_way(real, n_reference, n_validation):
    pool, ref, val = set(real.pool), set(real.reference), set(real.validation)
    assert len(ref) == n_reference and len(val) == n_validation and len(pool) == len(real.images) - n_reference - n_validation
    assert not pool & ref and not pool & val and not ref & val


def test_splits_are_disjoint_for_every_data_source(tmp_path):
    """Pool, validation and reference are pairwise disjoint for the built-ins, save_to_disk and image folders,
    and the same for every run seed (the split belongs to the data set)."""
    from autophagy.config import make_config
    from loops.run import load_data_for
    _assert_three_way(load_real_data("mnist", 16, 1000, 500), 1000, 500)
    _assert_three_way(load_real_data("digits", 8, 300, 100), 300, 100)
    _digits_to_disk(tmp_path / "ds")
    _assert_three_way(load_real_data(str(tmp_path / "ds"), 8, 10, 5), 10, 5)
    _assert_three_way(load_real_data(str(_image_folder(tmp_path / "imgs")), 8, 4, 2), 4, 2)
    a = load_data_for(make_config("micro", regime="fully-synthetic"))
    b = load_data_for(make_config("micro", regime="fully-synthetic", seed=7))
    assert np.array_equal(a.reference, b.reference) and np.array_equal(a.validation, b.validation)


def test_builtin_mnist_is_real_and_labelled():
    real = load_real_data("mnist", 16, 1000)
    assert real.images.shape == (5000, 1, 16, 16) and real.images.dtype == np.uint8
    assert real.num_classes == 10 and np.bincount(real.labels).tolist() == [500] * 10
    assert real.images.max() == 255 and real.images.mean() < 80  # dark background, bright strokes
    assert not set(real.pool) & set(real.reference)


def test_builtin_digits_resized():
    real = load_real_data("digits", 8, 300)
    assert real.images.shape == (1797, 1, 8, 8) and real.num_classes == 10


def _digits_to_disk(path):
    import datasets
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)) for _ in range(30)]
    ds = datasets.Dataset.from_dict({"img": images, "label": [i % 3 for i in range(30)]},
                                    features=datasets.Features({"img": datasets.Image(),
                                                                "label": datasets.ClassLabel(num_classes=3)}))
    ds.save_to_disk(str(path))


def test_save_to_disk_folder(tmp_path):
    _digits_to_disk(tmp_path / "ds")
    real = load_real_data(str(tmp_path / "ds"), 8, 10)
    assert real.images.shape == (30, 3, 8, 8) and real.num_classes == 3 and real.channels == 3


def _image_folder(root, n=12, bad=None):
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(root / f"c{i % 2}" / f"{i}.png")
    if bad:
        (root / "c0" / bad).write_bytes(b"this is not a png")
    return root


def test_image_folder_grayscale_with_labels(tmp_path):
    real = load_real_data(str(_image_folder(tmp_path / "imgs")), 8, 4)
    assert real.images.shape == (12, 1, 8, 8) and real.num_classes == 2


def test_undecodable_image_is_named(tmp_path):
    folder = _image_folder(tmp_path / "imgs", bad="broken.png")
    with pytest.raises(ConfigError, match="broken.png"):
        load_real_data(str(folder), 8, 4)
    assert len(load_real_data(str(folder), 8, 4, skip_unreadable=True).images) == 12


def test_reference_larger_than_data_is_refused():
    with pytest.raises(ConfigError, match="n-reference"):
        load_real_data("digits", 8, 5000)

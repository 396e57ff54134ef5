"""Feature spaces: lenet deterministic and cached; inception fails clearly without its weights."""
import os
import urllib.error

import numpy as np
import pytest

import autophagy.features as features
from autophagy.config import ConfigError, make_config
from autophagy.data import load_real_data


@pytest.fixture(scope="module")
def digits():
    return load_real_data("digits", 8, 300, 100)


def test_lenet_is_deterministic_cached_and_accurate(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPHAGY_CACHE", str(tmp_path / "a"))
    first = features.train_lenet(digits, seed=0)
    cached = list((tmp_path / "a" / "lenet").glob("*.pt"))
    assert len(cached) == 1
    assert first.quality > 0.85  # held-out accuracy on the validation split
    again = features.train_lenet(digits, seed=0)  # from the cache
    x = digits.images[digits.reference[:50]]
    assert np.array_equal(first(x), again(x)) and again.quality == first.quality
    monkeypatch.setenv("AUTOPHAGY_CACHE", str(tmp_path / "b"))
    retrained = features.train_lenet(digits, seed=0)  # trained anew from the same seed
    assert abs(retrained.quality - first.quality) < 0.03
    assert first.identity == again.identity == features.weights_id(first.model)  # a hash of the weights
    assert len(first.identity) == 16
    assert first(x).shape == (50, 128)
    assert set(first.classify(x)) <= set(range(10))


def test_inception_without_weights_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOPHAGY_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(features, "INCEPTION_FILE", "missing-inception.pt")

    def offline(fpath):
        raise urllib.error.URLError("no network")
    import cleanfid.downloads_helper
    monkeypatch.setattr(cleanfid.downloads_helper, "check_download_inception", offline)
    with pytest.raises(ConfigError) as exc:
        features.inception_weights_path(make_config("micro", features="inception"))
    message = str(exc.value)
    assert "--inception-weights" in message and "AUTOPHAGY_INCEPTION_WEIGHTS" in message and "\n" not in message


WEIGHTS = os.environ.get("AUTOPHAGY_INCEPTION_WEIGHTS", "/tmp/inception-2015-12-05.pt")


@pytest.mark.skipif(not os.path.isfile(WEIGHTS), reason="clean-fid Inception weights not available offline")
def test_inception_features_give_clean_fid_fid(digits):
    from cleanfid.fid import fid_from_feats

    from autophagy.metrics import compute_metrics
    extractor = features.InceptionFeatures(features.Path(WEIGHTS))
    a, b = extractor(digits.images[:64]), extractor(digits.images[64:128])
    assert a.shape == (64, 2048)
    assert compute_metrics(a, b)["fid"] == pytest.approx(fid_from_feats(a, b), rel=1e-9)


def test_lenet_does_not_depend_on_the_run_seed(micro, tmp_path):
    """A fixed yardstick: runs of one data set with different seeds score in the very same network."""
    import json

    from loops.run import run_loop
    ids = set()
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        run_loop(micro(generations=1, seed=seed), out)
        ids.add(json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["feature_id"])
    assert len(ids) == 1


def test_unlabeled_images_are_scored_offline_by_default(micro, tmp_path):
    """An image folder without class folders: `auto` picks the autoencoder trained on the pool, recorded in
    the rows; `--features lenet` still refuses with one clear line."""
    import json

    from PIL import Image

    from loops.run import run_loop
    real = load_real_data("mnist", 8, 0)
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    for i in range(700):
        Image.fromarray(real.images[i, 0]).save(folder / f"{i:04d}.png")
    out = tmp_path / "run"
    run_loop(micro(generations=1, data=str(folder), n_validation=50), out)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["feature_space"] == "autoencoder" and len(row["feature_id"]) == 16
    assert "classes_covered" not in row and row["fid"] > 0
    baseline = json.loads((out / "baseline.json").read_text())
    assert baseline["feature_space"] == "autoencoder" and baseline["autoencoder_heldout_mse"] < 0.5
    with pytest.raises(ConfigError, match="'lenet' needs class labels"):
        run_loop(micro(generations=1, data=str(folder), n_validation=50, features="lenet"), tmp_path / "run2")
    # the preset conditions on the class where the data have labels (auto): these have none
    assert json.loads((out / "gen_000" / "model" / "unet" / "config.json").read_text())["num_class_embeds"] is None
    with pytest.raises(ConfigError, match="--conditioning: 'class' needs class labels"):
        run_loop(micro(generations=1, data=str(folder), n_validation=50, conditioning="class"), tmp_path / "run3")


def test_the_default_data_sets_lenet_ships_with_the_package(tmp_path, monkeypatch):
    """The `cpu` preset's data (built-in mnist at 16 px) scores in the packaged network on every machine,
    even where a retrained copy sits in the cache; nothing is trained."""
    cfg = make_config("cpu")
    real = load_real_data(cfg.data, cfg.resolution, cfg.n_reference, cfg.n_validation)
    monkeypatch.setenv("AUTOPHAGY_CACHE", str(tmp_path))
    shadow = features._lenet_cache_path(real, features.LENET_SEED)
    shadow.parent.mkdir(parents=True)
    shadow.write_bytes(b"a retrained copy would be read from here")
    monkeypatch.setattr(features.torch.optim, "Adam", None)  # training would fail
    extractor = features.train_lenet(real)
    assert extractor.identity == "75d8e682ebb423e4" and extractor.quality > 0.9
    assert (features.PACKAGED / shadow.name).is_file()

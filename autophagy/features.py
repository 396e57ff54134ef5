"""Feature spaces the metrics are computed in, behind one interface (`FEATURE_SPACES` registry).

- `lenet` (default): a small CNN classifier trained once per data set on the real pool (never on
  the validation or reference images), with a fixed seed, and cached on disk outside the run folder:
  every run of that data set, whatever its seed, scores in the very same network, a fixed yardstick.
  `feature_id` is a hash of its weights. Retrained in another process it may differ in the last bits
  (oneDNN/MKL kernels depend on memory alignment, thread count and CPU), so the cached file is the
  reference; the built-in default's network ships with the package (`autophagy/weights/`). Its
  penultimate layer gives the features; its head labels generated images.
- `autoencoder`: for data without labels, a small convolutional autoencoder trained the same way
  (once per data set, on the pool only, cached, weight-hash `feature_id`); its bottleneck gives the
  features. `auto` (the default) takes lenet where the data have labels, else the autoencoder, so any
  image folder is scored offline; rows record the space actually used in `feature_space`.
- `inception`: clean-fid's Inception-v3 (torchscript, 2048-d pool features) with clean-fid's clean
  PIL-bicubic resize to 299x299. Offline it takes a local weights file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from autophagy.config import ConfigError, RunConfig, cache_dir
from autophagy.data import RealData
from autophagy.rundir import atomic_write_bytes
from autophagy.seeding import rng_for, seed_for
from autophagy.training import images_to_tensor

LENET_CONFIG = dict(version=3, epochs=6, batch_size=64, learning_rate=1e-3, width=32, feature_dim=128)
# Networks shipped with the package, named as in the cache: the lenet of the built-in `mnist` at 16 px
# (the `cpu` preset). Training it again gives other last bits on another CPU or thread count (FID
# differs by about 1 %); shipped, every machine scores in the very same network (feature_id 75d8e682ebb423e4).
PACKAGED = Path(__file__).parent / "weights"
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"


class LeNet(nn.Module):
    """conv-pool-conv-pool-fc(feature_dim)-fc(classes); `features` is the penultimate activation."""

    def __init__(self, channels: int, resolution: int, num_classes: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width * (resolution // 4) ** 2, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LeNetFeatures:
    name = "lenet"
    quality_name = "lenet_accuracy"  # the baseline.json key of `quality`

    def __init__(self, model: LeNet, quality: float, identity: str):
        self.model = model.eval()
        self.quality = quality    # held-out quality of the network (lenet: accuracy on the validation split)
        self.identity = identity  # hash of the weights: names exactly which network gave the features

    @torch.inference_mode()
    def _batches(self, images: np.ndarray, fn, batch: int = 1000) -> np.ndarray:
        return np.concatenate([fn(images_to_tensor(images[i:i + batch], "cpu")).numpy()
                               for i in range(0, len(images), batch)])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._batches(images, self.model.features).astype(np.float64)

    def classify(self, images: np.ndarray) -> np.ndarray:
        return self._batches(images, lambda x: self.model(x).argmax(1))

    def confidence(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(max softmax probability, predicted class) per image: the curated loop's verifier."""
        probs = self._batches(images, lambda x: self.model(x).softmax(1))
        return probs.max(1), probs.argmax(1)


LENET_SEED = 0  # one network per data set: the yardstick does not move with the run seed


def weights_id(model: nn.Module) -> str:
    """A hash of the network's weights: names exactly which network gave the features."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _save_network(path: Path, model: nn.Module, quality: float) -> None:
    """A trained feature network into the cache, atomically (the run folder's one atomic writer)."""
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "accuracy": quality}, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def _lenet_cache_path(real: RealData, seed: int) -> Path:
    key = json.dumps({**LENET_CONFIG, "data": real.fingerprint(), "shape": list(real.images.shape[1:]),
                      "classes": real.num_classes, "seed": seed}, sort_keys=True)
    return cache_dir() / "lenet" / f"lenet-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def train_lenet(real: RealData, seed: int = LENET_SEED) -> LeNetFeatures:
    """Train (or load from the cache) the lenet classifier on the real pool; its held-out accuracy is
    measured on the validation split (or, without one, on a tenth of the pool held out from training)."""
    if real.labels is None:
        raise ConfigError("--features: 'lenet' needs a labelled dataset and this one has no labels; "
                          "use --features auto (an autoencoder trained on the pool, offline) or inception")
    path = _lenet_cache_path(real, seed)
    _, C, H, _ = real.images.shape
    torch.manual_seed(seed_for(seed, "lenet"))  # initial weights derive from the seed
    model = LeNet(C, H, real.num_classes, LENET_CONFIG["width"], LENET_CONFIG["feature_dim"])
    if (PACKAGED / path.name).exists():
        path = PACKAGED / path.name  # the built-in default's network ships with the package: it wins
    if path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(blob["state_dict"])
        return LeNetFeatures(model, float(blob["accuracy"]), weights_id(model))
    train, held_out = real.pool, real.validation
    if not len(held_out):
        cut = len(real.pool) // 10
        held_out, train = real.pool[:cut], real.pool[cut:]
    x = images_to_tensor(real.images[train], "cpu")
    y = torch.as_tensor(real.labels[train])
    optimizer = torch.optim.Adam(model.parameters(), lr=LENET_CONFIG["learning_rate"])
    model.train()
    batch = LENET_CONFIG["batch_size"]
    for epoch in tqdm(range(LENET_CONFIG["epochs"]), desc="lenet features", leave=False):
        order = torch.from_numpy(rng_for(seed, "lenet", epoch).permutation(len(x)))
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    extractor = LeNetFeatures(model, 0.0, weights_id(model))
    predicted = extractor.classify(real.images[held_out])
    extractor.quality = float((predicted == real.labels[held_out]).mean())
    _save_network(path, model, extractor.quality)
    print(f"lenet feature extractor trained: held-out accuracy {extractor.quality:.3f} (cached at {path})")
    return train_lenet(real, seed)   # the cached network, as every later run loads it (same last bits)


def inception_weights_path(cfg: RunConfig) -> Path:
    """--inception-weights, else $AUTOPHAGY_INCEPTION_WEIGHTS, else clean-fid's own download spot."""
    candidates = [cfg.inception_weights, os.environ.get("AUTOPHAGY_INCEPTION_WEIGHTS", ""), f"/tmp/{INCEPTION_FILE}"]
    for candidate in filter(None, candidates):
        if Path(candidate).is_file():
            return Path(candidate)
    try:  # online: let clean-fid fetch its weights the way it always does
        from cleanfid.downloads_helper import check_download_inception
        return Path(check_download_inception(fpath="/tmp"))
    except Exception:
        raise ConfigError(f"--features: 'inception' needs clean-fid's Inception weights and none were found or "
                          f"downloadable; download {INCEPTION_URL} on a machine with internet and pass "
                          f"--inception-weights FILE (or set AUTOPHAGY_INCEPTION_WEIGHTS)") from None


class InceptionFeatures:
    name = "inception"

    def __init__(self, weights: Path, device="cpu", batch_size: int = 64):
        from cleanfid.inception_torchscript import InceptionV3W
        from cleanfid.resize import build_resizer
        folder = weights.parent
        if weights.name != INCEPTION_FILE:  # InceptionV3W wants the file under its own name
            folder = cache_dir() / "inception"
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / INCEPTION_FILE
            if not link.exists():
                link.symlink_to(weights.resolve())
        self.model = InceptionV3W(str(folder), download=False).to(device).eval()
        self.resize = build_resizer("clean")  # clean-fid's PIL bicubic resize to 299x299
        self.device, self.batch_size = device, batch_size
        self.identity = INCEPTION_FILE.removesuffix(".pt")

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        feats = []
        for i in tqdm(range(0, len(images), self.batch_size), desc="inception features", leave=False):
            batch = images[i:i + self.batch_size].transpose(0, 2, 3, 1)
            if batch.shape[-1] == 1:
                batch = np.repeat(batch, 3, axis=-1)
            resized = np.stack([self.resize(img) for img in batch]).transpose(0, 3, 1, 2)
            feats.append(self.model(torch.from_numpy(resized).float().to(self.device)).cpu().numpy())
        return np.concatenate(feats).astype(np.float64)

    def classify(self, images: np.ndarray) -> None:
        return None  # no classifier head: class statistics are recorded in the lenet space only


class AutoEncoder(nn.Module):
    """conv-conv-fc(feature_dim) encoder and its mirror: a feature network that needs no labels."""

    def __init__(self, channels: int, resolution: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.side = resolution // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(2 * width * self.side ** 2, feature_dim))
        self.decoder = nn.Sequential(
            nn.ReLU(), nn.Linear(feature_dim, 2 * width * self.side ** 2), nn.Unflatten(1, (2 * width, self.side, self.side)),
            nn.ReLU(), nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Tanh())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class AutoEncoderFeatures(LeNetFeatures):
    name = "autoencoder"
    quality_name = "autoencoder_heldout_mse"  # `quality` is its held-out reconstruction error

    def classify(self, images: np.ndarray) -> None:
        return None  # no labels, no class statistics


AUTOENCODER_CONFIG = dict(version=1, epochs=10, batch_size=64, learning_rate=1e-3, width=32, feature_dim=128)


def train_autoencoder(real: RealData, seed: int = LENET_SEED) -> AutoEncoderFeatures:
    """The default feature network for data without labels: an autoencoder trained once per data set
    on the real pool (never on validation or reference images), cached like lenet; features are its
    bottleneck. `quality` holds its held-out reconstruction error (mean squared, images in [-1, 1])."""
    key = json.dumps({**AUTOENCODER_CONFIG, "data": real.fingerprint(), "shape": list(real.images.shape[1:]),
                      "seed": seed}, sort_keys=True)
    path = cache_dir() / "autoencoder" / f"ae-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    _, C, H, _ = real.images.shape
    torch.manual_seed(seed_for(seed, "lenet"))
    model = AutoEncoder(C, H, AUTOENCODER_CONFIG["width"], AUTOENCODER_CONFIG["feature_dim"])
    if path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(blob["state_dict"])
        return AutoEncoderFeatures(model, float(blob["accuracy"]), weights_id(model))
    x = images_to_tensor(real.images[real.pool], "cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=AUTOENCODER_CONFIG["learning_rate"])
    batch = AUTOENCODER_CONFIG["batch_size"]
    model.train()
    for epoch in tqdm(range(AUTOENCODER_CONFIG["epochs"]), desc="autoencoder features", leave=False):
        order = torch.from_numpy(rng_for(seed, "lenet", epoch).permutation(len(x)))
        for i in range(0, len(x), batch):
            loss = F.mse_loss(model(x[order[i:i + batch]]), x[order[i:i + batch]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    held_out = real.validation if len(real.validation) else real.pool[:100]
    with torch.no_grad():
        y = images_to_tensor(real.images[held_out], "cpu")
        error = float(F.mse_loss(model(y), y))
    _save_network(path, model, error)
    return AutoEncoderFeatures(model, error, weights_id(model))


def resolve_features(name: str, real: RealData) -> str:
    """The feature space `name` stands for on these data: `auto` is lenet with labels, else the autoencoder."""
    if name == "auto":
        return "lenet" if real.labels is not None else "autoencoder"
    return name


def _auto(cfg: RunConfig, real: RealData):
    """lenet where the data have labels, else the autoencoder: both offline, both trained on the pool."""
    return train_lenet(real) if resolve_features("auto", real) == "lenet" else train_autoencoder(real)


def _lenet(cfg: RunConfig, real: RealData):
    return train_lenet(real)


def _inception(cfg: RunConfig, real: RealData):
    return InceptionFeatures(inception_weights_path(cfg), "cuda" if torch.cuda.is_available() else "cpu")


# the names are listed in autophagy.config.FEATURE_SPACE_NAMES, so validation needs no heavy import
FEATURE_SPACES = {"auto": _auto, "lenet": _lenet, "autoencoder": lambda cfg, real: train_autoencoder(real),
                  "inception": _inception}


def build_extractor(cfg: RunConfig, real: RealData):
    return FEATURE_SPACES[cfg.features](cfg, real)

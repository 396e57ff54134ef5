"""Self-correction functions (Gillman et al., ICML 2024): what the `self-correcting` regime applies to
every synthetic image before it is trained on.

A correction is a registration, as regimes and samplers are: `fit(images, labels, cfg)` sees the real
training images R_0 (uint8, (N, C, H, W)) with their labels once per run and returns `project(images,
classes) -> images`, the corrected version C(x) of each image given its class (the class comes from
the sample's own label in a class-conditional run, else from the lenet classifier trained on the real
pool only). The regime then moves each image a fraction γ of the way: (1 − γ)·x + γ·C(x), rounded to
uint8 (`blend`); γ = 1 replaces the image by C(x), which is what Gillman et al.'s MNIST code does.

Built in: `kmeans`, their MNIST correction: per class, k-means with `correction_clusters` centroids
(16 in their runs; scikit-learn's KMeans, random_state 0, n_init "auto", as their code) on the real
images of that class; a synthetic image is replaced by the nearest centroid of its class, each centroid
rounded as their code rounds it (clip(round(0.5 + c), 0, 255)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from autophagy.config import ConfigError, RunConfig, field_names

Project = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Correction:
    fit: Callable[[np.ndarray, np.ndarray, RunConfig], Project]
    uses: tuple[str, ...] = ()
    description: str = ""


CORRECTIONS: dict[str, Correction] = {}


def register_correction(name: str, fit: Callable[[np.ndarray, np.ndarray, RunConfig], Project], *,
                        uses: tuple[str, ...] = (), description: str = "") -> None:
    """Add a correction function: `fit(real_images, real_labels, cfg)` returns `project(images, classes)`.
    `uses` names the config fields fit/project read. A taken name is refused."""
    if name in CORRECTIONS:
        raise ConfigError(f"--plugin: correction {name!r} is already registered; choose another name")
    unknown = [f for f in uses if f not in field_names()]
    if unknown:
        raise ConfigError(f"--plugin: correction {name!r} declares uses={unknown}, which are not config fields")
    CORRECTIONS[name] = Correction(fit, tuple(uses), description)


def blend(images: np.ndarray, corrected: np.ndarray, strength: float) -> np.ndarray:
    """(1 − γ)·x + γ·C(x), rounded to uint8: γ = 0 keeps x, γ = 1 gives C(x)."""
    if corrected.shape != images.shape:
        raise ConfigError(f"--correction: the correction returned images of shape {corrected.shape} for "
                          f"{images.shape}; it must keep the shape")
    mixed = (1.0 - strength) * images.astype(np.float64) + strength * corrected.astype(np.float64)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def kmeans_fit(images: np.ndarray, labels: np.ndarray, cfg: RunConfig) -> Project:
    """Gillman et al.'s MNIST correction: k-means centroids per class of the real images."""
    from sklearn.cluster import KMeans
    flat = images.reshape(len(images), -1).astype(np.float64)
    models, centres = {}, {}
    for c in np.unique(labels):
        members = flat[labels == c]
        k = min(cfg.correction_clusters, len(members))
        models[int(c)] = KMeans(n_clusters=k, random_state=0, n_init="auto").fit(members)
        centres[int(c)] = np.clip(np.round(0.5 + models[int(c)].cluster_centers_), 0, 255).astype(np.uint8)

    def project(x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        out = x.copy()
        rows = x.reshape(len(x), -1).astype(np.float64)
        for c in np.unique(classes):
            if int(c) not in models:  # a class R_0 does not hold: left as it is
                continue
            members = np.flatnonzero(classes == c)
            nearest = models[int(c)].predict(rows[members])
            out[members] = centres[int(c)][nearest].reshape((len(members), *x.shape[1:]))
        return out
    return project


register_correction("kmeans", kmeans_fit, uses=("correction_clusters",),
                    description="nearest of correction_clusters k-means centroids of R_0's images of its class "
                                "(Gillman et al.'s MNIST code)")

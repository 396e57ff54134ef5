"""Scores of a generated set against the real reference set, on feature arrays.

- FID: clean-fid's `frechet_distance` on the two Gaussians (Parmar et al. 2022).
- precision / recall: Kynkäänniemi et al. 2019, k-NN radii within each set.
- density / coverage: Naeem et al. 2020, k-NN radii of the real set.
Pairwise distances are computed on torch in row chunks, so 10,000 x 10,000 x 2048 stays within a
few hundred MB.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from cleanfid.fid import frechet_distance

METRIC_KEYS = ("fid", "precision", "recall", "density", "coverage")
CHUNK_ROWS = 1024


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _chunked_distances(a: torch.Tensor, b: torch.Tensor):
    """Yield (row slice, Euclidean distances of a[rows] to all of b)."""
    for start in range(0, len(a), CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        yield rows, torch.cdist(a[rows], b)


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of every point to its k-th nearest neighbour within the same set (itself excluded)."""
    if k >= len(features):
        raise ValueError(f"k={k} needs more than {k} points per set, got {len(features)}")
    radii = torch.empty(len(features), dtype=features.dtype)
    for rows, d in _chunked_distances(features, features):
        radii[rows] = d.topk(k + 1, dim=1, largest=False).values[:, -1]  # +1: the point itself at 0
    return radii


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def compute_metrics(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3,
                    real_stats: tuple | None = None, real_radii: torch.Tensor | None = None) -> dict:
    """fid, precision, recall, density, coverage of `fake_features` against `real_features`.

    `real_stats` and `real_radii` may be passed in when the same reference set is scored many times.
    """
    real, fake = _t(real_features), _t(fake_features)
    mu_r, sigma_r = real_stats if real_stats is not None else gaussian_stats(real_features)
    mu_f, sigma_f = gaussian_stats(fake_features)
    with warnings.catch_warnings():  # small sets give singular covariances; clean-fid offsets them itself
        warnings.simplefilter("ignore")
        fid = float(frechet_distance(mu_r, sigma_r, mu_f, sigma_f))

    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    fake_radii = knn_radii(fake, k)

    # one pass over d(real, fake), in row chunks of the real set:
    #   columns -> fake points in real balls (precision, density); rows -> recall, coverage
    in_real_ball = torch.zeros(len(fake), dtype=torch.float64)
    any_real_ball = torch.zeros(len(fake), dtype=torch.bool)
    any_fake_ball = torch.zeros(len(real), dtype=torch.bool)
    nearest_fake = torch.empty(len(real), dtype=torch.float64)
    for rows, d in _chunked_distances(real, fake):
        inside_real = d <= real_radii[rows, None]
        in_real_ball += inside_real.sum(0).double()
        any_real_ball |= inside_real.any(0)
        any_fake_ball[rows] = (d <= fake_radii[None, :]).any(1)
        nearest_fake[rows] = d.min(1).values

    return {
        "fid": fid,
        "precision": float(any_real_ball.double().mean()),
        "recall": float(any_fake_ball.double().mean()),
        "density": float(in_real_ball.sum() / (k * len(fake))),
        "coverage": float((nearest_fake <= real_radii).double().mean()),
    }


def class_statistics(predicted: np.ndarray, num_classes: int) -> dict:
    """Class histogram of generated images, classes covered and normalised entropy (1 = uniform)."""
    hist = np.bincount(predicted, minlength=num_classes)[:num_classes]
    p = hist / max(hist.sum(), 1)
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / np.log(num_classes)) if num_classes > 1 else 0.0
    return {"class_histogram": hist.tolist(), "classes_covered": int((hist > 0).sum()), "class_entropy": entropy}

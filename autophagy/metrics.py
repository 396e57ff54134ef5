"""Scores of a generated set against the real reference set, on feature arrays.

- FID: clean-fid's `frechet_distance` on the two Gaussians (Parmar et al. 2022), on every generated image.
- KID: clean-fid's `kernel_distance` (Bińkowski et al. 2018: unbiased MMD² with the cubic polynomial
  kernel, averaged over random subsets), on every generated image; unbiased at small sample sizes.
- precision / recall: Kynkäänniemi et al. 2019, k-NN radii within each set.
- density / coverage: Naeem et al. 2020, k-NN radii of the real set.
  P/R/D/C compare sets of equal size (as both papers do): when more images were generated than the
  reference holds, a fixed, seeded subset of that size is scored. Ties count as outside a ball, as in
  the authors' `prdc` code (`<`): a collapsed loop produces exact duplicates, where ties matter.
- memorization: Gu et al. 2023 ("On memorization in diffusion models", arXiv 2310.02664), also used
  by Yoon et al. 2023: the fraction of generated images whose nearest training image is closer than
  1/3 of the distance to the second nearest (pixel space, training set deduplicated).
Pairwise distances are computed on torch in row chunks, so 10,000 x 10,000 x 2048 stays within a
few hundred MB.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from cleanfid.fid import frechet_distance, kernel_distance

from autophagy.layout import METRIC_KEYS  # the one list of metric keys (compute_metrics returns these)

CHUNK_ROWS = 1024
KID_SUBSETS = 10           # clean-fid's default is 100 subsets: 9.6 s per score on a 2-core CPU, 10 give ~1 s
MEMORIZATION_RATIO = 1 / 3  # Gu et al. 2023's threshold on d(x, NN1) / d(x, NN2)


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


def reweighted_stats(features: np.ndarray, labels: np.ndarray, target) -> tuple[np.ndarray, np.ndarray]:
    """The Gaussian of `features` as if the set were resampled to the class mix `target` (importance
    weights q_c / p_c per image of class c; exact, no resampling noise): the reference a shifted
    distribution is scored against, so that the shift itself is not counted as lost quality."""
    q = np.asarray(target, dtype=np.float64)
    p = np.bincount(labels, minlength=len(q))[:len(q)] / len(labels)
    weights = np.where(p[labels] > 0, q[labels] / np.where(p[labels] > 0, p[labels], 1), 0.0)
    return np.average(features, axis=0, weights=weights), np.cov(features, rowvar=False, aweights=weights)


def fid_to(stats: tuple[np.ndarray, np.ndarray], fake_features: np.ndarray) -> float:
    """FID of `fake_features` against a reference given by its Gaussian statistics."""
    mu_f, sigma_f = gaussian_stats(fake_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(frechet_distance(stats[0], stats[1], mu_f, sigma_f))


def kid(real_features: np.ndarray, fake_features: np.ndarray, seed: int = 0) -> float:
    """clean-fid's kernel distance; its subsets come from numpy's global RNG, seeded here and restored."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        return float(kernel_distance(real_features, fake_features, num_subsets=KID_SUBSETS))
    finally:
        np.random.set_state(state)


def equal_size_subset(n_fake: int, n_real: int, seed: int = 0) -> np.ndarray:
    """Indices of the generated images P/R/D/C are computed on: all, or a fixed seeded subset of n_real."""
    if n_fake <= n_real:
        return np.arange(n_fake)
    return np.sort(np.random.default_rng(seed).choice(n_fake, n_real, replace=False))


def compute_metrics(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3,
                    real_stats: tuple | None = None, real_radii: torch.Tensor | None = None, seed: int = 0) -> dict:
    """fid, kid, precision, recall, density, coverage of `fake_features` against `real_features`.

    FID and KID use every generated image; P/R/D/C use as many as there are real ones (a seeded subset).
    `real_stats` and `real_radii` may be passed in when the same reference set is scored many times.
    """
    mu_r, sigma_r = real_stats if real_stats is not None else gaussian_stats(real_features)
    mu_f, sigma_f = gaussian_stats(fake_features)
    with warnings.catch_warnings():  # small sets give singular covariances; clean-fid offsets them itself
        warnings.simplefilter("ignore")
        fid = float(frechet_distance(mu_r, sigma_r, mu_f, sigma_f))
    scores = {"fid": fid, "kid": kid(real_features, fake_features, seed)}
    subset = equal_size_subset(len(fake_features), len(real_features), seed)
    return {**scores, **prdc(real_features, fake_features[subset], k, real_radii)}


def prdc(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3,
         real_radii: torch.Tensor | None = None) -> dict:
    """precision, recall (Kynkäänniemi et al.), density, coverage (Naeem et al.); ties as in `prdc`."""
    real, fake = _t(real_features), _t(fake_features)
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    fake_radii = knn_radii(fake, k)

    # one pass over d(real, fake), in row chunks of the real set:
    #   columns -> fake points in real balls (precision, density); rows -> recall, coverage
    in_real_ball = torch.zeros(len(fake), dtype=torch.float64)
    any_real_ball = torch.zeros(len(fake), dtype=torch.bool)
    any_fake_ball = torch.zeros(len(real), dtype=torch.bool)
    nearest_fake = torch.empty(len(real), dtype=torch.float64)
    for rows, d in _chunked_distances(real, fake):
        inside_real = d < real_radii[rows, None]
        in_real_ball += inside_real.sum(0).double()
        any_real_ball |= inside_real.any(0)
        any_fake_ball[rows] = (d < fake_radii[None, :]).any(1)
        nearest_fake[rows] = d.min(1).values

    return {
        "precision": float(any_real_ball.double().mean()),
        "recall": float(any_fake_ball.double().mean()),
        "density": float(in_real_ball.sum() / (k * len(fake))),
        "coverage": float((nearest_fake < real_radii).double().mean()),
    }


def total_variation(histogram, target) -> float:
    """Total variation distance ½·Σ|p − q| between a class histogram (counts) and a distribution q."""
    p = np.asarray(histogram, dtype=np.float64)
    p = p / max(p.sum(), 1.0)
    return float(0.5 * np.abs(p - np.asarray(target, dtype=np.float64)).sum())


def memorization(generated: np.ndarray, training: np.ndarray, ratio: float = MEMORIZATION_RATIO) -> float:
    """Fraction of `generated` images (N, ...) that copy an image of `training` (M, ...): their nearest
    training image is closer than `ratio` times the second nearest (Gu et al. 2023), in pixel space.
    The training set is deduplicated first, so a duplicated training image still counts as one."""
    train = np.unique(training.reshape(len(training), -1), axis=0)
    if len(train) < 2:
        return float("nan")
    gen, train = _t(generated.reshape(len(generated), -1)), _t(train)
    copies = 0
    for rows, d in _chunked_distances(gen, train):
        nearest = d.topk(2, dim=1, largest=False).values
        copies += int((nearest[:, 0] < ratio * nearest[:, 1]).sum())
    return copies / len(generated)


def class_statistics(predicted: np.ndarray, num_classes: int) -> dict:
    """Class histogram of generated images, classes covered and normalised entropy (1 = uniform)."""
    hist = np.bincount(predicted, minlength=num_classes)[:num_classes]
    p = hist / max(hist.sum(), 1)
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / np.log(num_classes)) if num_classes > 1 else 0.0
    return {"class_histogram": hist.tolist(), "classes_covered": int((hist > 0).sum()), "class_entropy": entropy}

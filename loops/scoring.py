"""How a generation is scored: the feature extractor, the reference set's cached features, statistics
and k-NN radii, and the real-vs-real floor (baseline.json), set up once per run."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from autophagy.config import RunConfig
from autophagy.data import RealData
from autophagy.features import build_extractor
from autophagy.metrics import (class_statistics, compute_metrics, fid_to, gaussian_stats, knn_radii, memorization,
                               reweighted_stats)
from autophagy.rundir import RunDir, atomic_save_npz, atomic_write_text, load_npz
from autophagy.seeding import rng_for


@dataclass
class Scorer:
    """The feature extractor and the reference set's cached features, statistics and k-NN radii."""
    extractor: object
    reference: np.ndarray
    k: int
    num_classes: int
    reference_labels: np.ndarray | None = None   # the reference's true classes (distribution shifting)

    def __post_init__(self):
        self.stats = gaussian_stats(self.reference)
        self.radii = knn_radii(torch.from_numpy(self.reference), self.k)

    def score(self, images: np.ndarray, seed: int = 0) -> dict:
        """FID and KID on every image; P/R/D/C on a seeded subset as large as the reference; the class
        histogram where the feature network classifies."""
        row = compute_metrics(self.reference, self.extractor(images), self.k, self.stats, self.radii, seed)
        predicted = self.extractor.classify(images)
        if predicted is not None:
            row.update(class_statistics(predicted, self.num_classes))
        return row


    def target_fid(self, images: np.ndarray, target) -> float | None:
        """FID against the reference resampled to the class mix `target` (None without labels)."""
        if self.reference_labels is None:
            return None
        return fid_to(reweighted_stats(self.reference, self.reference_labels, target), self.extractor(images))


def reference_features(rd: RunDir, extractor, images: np.ndarray) -> np.ndarray:
    """The reference set's features: from the run's cache when the very same network made them (a damaged
    or foreign cache is rebuilt), else computed and cached (and the baseline, measured with it, dropped)."""
    cached = load_npz(rd.reference_features_path, damaged_ok=True)
    if cached is not None and "feature_id" in cached and str(cached["feature_id"]) == extractor.identity \
            and cached["features"].shape[0] == len(images):
        return cached["features"]
    features = extractor(images)
    atomic_save_npz(rd.reference_features_path, features=features, feature_id=extractor.identity)
    rd.baseline_path.unlink(missing_ok=True)
    return features


def build_scorer(cfg: RunConfig, rd: RunDir, real: RealData, r0: np.ndarray) -> Scorer:
    """The run's scorer, with the real-vs-real floor written once per run (`r0`: R_0's indices)."""
    extractor = build_extractor(cfg, real)
    evaluation = real.evaluation(cfg.evaluate_on)
    scorer = Scorer(extractor, reference_features(rd, extractor, real.images[evaluation]), cfg.k, real.num_classes,
                    None if real.labels is None else real.labels[evaluation])
    if not rd.baseline_path.exists():
        write_baseline(cfg, rd, real, scorer, r0)
    return scorer


def write_baseline(cfg: RunConfig, rd: RunDir, real: RealData, scorer: Scorer, r0: np.ndarray) -> None:
    """The real-vs-real floor: pool images scored like a generation, and what memorization reads for
    held-out real images that copy nothing."""
    extractor, evaluation = scorer.extractor, real.evaluation(cfg.evaluate_on)
    n = min(cfg.n_synthetic, len(real.pool))
    baseline = real.pool[np.sort(rng_for(cfg.seed, "split", 1).choice(len(real.pool), n, replace=False))]
    held_out = real.validation if cfg.evaluate_on == "reference" and len(real.validation) else evaluation
    row = {"kind": "real-baseline", "seed": cfg.seed, "feature_space": extractor.name,
           "feature_id": extractor.identity, "k": cfg.k, "evaluated_on": cfg.evaluate_on,
           "n_reference": len(scorer.reference), "n_generated": n, **scorer.score(real.images[baseline], cfg.seed),
           "memorization": memorization(real.images[held_out], real.images[r0])}
    if getattr(extractor, "quality", None) is not None:  # held-out quality of the feature network
        row[extractor.quality_name] = extractor.quality
    atomic_write_text(rd.baseline_path, json.dumps(row) + "\n")

"""The metrics row of a generation, in one place: what one row of metrics.jsonl holds (DESIGN.md §7,
§11), built from what the generation measured. The key names are autophagy.layout's."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autophagy.config import target_probabilities
from autophagy.layout import HEALTH_KEYS, HEALTH_PREFIX
from autophagy.metrics import total_variation
from autophagy.seeding import rng_for
from loops.artifacts import memory_mb
from loops.regimes import REGIMES, method_fields

# sampler weights a row always carries (0.0 where the run's sampler does not read them), as rows always have
ROW_WEIGHTS = ("guidance_weight", "neon_weight")


@dataclass
class TrainingData:
    """D_t as arrays, and what the row says about it."""
    images: np.ndarray
    labels: np.ndarray | None
    n_real: int
    n_synthetic: int
    info: dict           # the regime's extra row fields (e.g. what curation kept)
    train_steps: int     # optimizer steps θ_t trains for


def health_scores(scores: dict) -> dict:
    """A guided run's unguided health draws as the row's plain_* keys."""
    return {HEALTH_PREFIX + k: scores[k] for k in HEALTH_KEYS if k in scores}


def rejection_subset(classes: np.ndarray, target, rng: np.random.Generator) -> np.ndarray:
    """The largest subset of a set of draws whose class mix is exactly `target` (the outcome of rejection
    sampling the draws to q, at its best): n = min over classes of available / q_c, round(n · q_c) of
    each class, chosen at random. Indices into `classes`, sorted."""
    q = np.asarray(target, dtype=np.float64)
    available = np.bincount(classes, minlength=len(q))[:len(q)]
    n = int(np.floor(min(available[c] / q[c] for c in range(len(q)) if q[c] > 0)))
    counts = np.minimum(np.round(n * q).astype(int), available)
    chosen = [rng.choice(np.flatnonzero(classes == c), counts[c], replace=False) for c in range(len(q)) if counts[c]]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def target_scores(cfg, scores: dict, scorer, samples, health, t: int = 0) -> dict:
    """Distribution shifting: total variation of S_t's class histogram (and of the unguided health
    draws') to the target q, as the lenet classifier of the real pool sees them, and FID against the
    reference resampled to q (`target_fid`, `plain_target_fid`). The reference point of a filter:
    the health draws rejection-sampled to q (`rejection_target_tv`, `rejection_target_fid`, from
    `rejection_n` of them; FID on fewer images reads higher, so compare it at equal counts)."""
    q = target_probabilities(cfg)
    if not q or "class_histogram" not in scores:
        return {}
    out = {"target_tv": total_variation(scores["class_histogram"], q), "target_fid": scorer.target_fid(samples, q)}
    if health is not None:
        classes = scorer.extractor.classify(health)
        histogram = np.bincount(classes, minlength=len(q))[:len(q)]
        kept = rejection_subset(classes, q, rng_for(cfg.seed, "rejection", t))
        out.update({HEALTH_PREFIX + "target_tv": total_variation(histogram, q),
                    HEALTH_PREFIX + "target_fid": scorer.target_fid(health, q), "rejection_n": len(kept)})
        if len(kept) > 1:
            rejected = np.bincount(classes[kept], minlength=len(q))[:len(q)]
            out.update({"rejection_target_tv": total_variation(rejected, q),
                        "rejection_target_fid": scorer.target_fid(health[kept], q)})
    return {k: v for k, v in out.items() if v is not None}


def regime_labels(cfg) -> dict:
    """The fields of a row that its run's regime decides, not its models: the regime, the fields its regime
    and sampler declare that they read (`uses`), the sampler weights, its own sampler and its control. A
    generation 0 copied from another run's (loops.generation_zero) takes the copying run's."""
    regime, uses = REGIMES[cfg.regime], method_fields(cfg)
    return {"regime": cfg.regime,
            **{name: getattr(cfg, name) if name in uses else 0.0 for name in ROW_WEIGHTS},
            "uses": {name: getattr(cfg, name) for name in uses},     # what the registrations declare
            "own_sampler": regime.sampler or "plain", "control": regime.control}


def metrics_row(run, t: int, scores: dict, data: TrainingData, train_stats: dict, setup, scorer, n_generated: int,
                seconds: dict) -> dict:
    """One generation's row: identity, the scores, the instrument, the data sizes, the method's fields
    (as its registration declares them), cost and time."""
    cfg = run.cfg
    nfe_per_image = cfg.sampling_steps * setup.denoiser.networks_per_step
    return {
        "generation": t, "regime": cfg.regime, "sampler": run.sampler_name, "seed": cfg.seed, "preset": cfg.preset,
        **scores,
        "feature_space": scorer.extractor.name, "feature_id": scorer.extractor.identity, "k": cfg.k,
        "evaluated_on": cfg.evaluate_on, "n_reference": len(scorer.reference), "n_generated": n_generated,
        "n_prdc": min(n_generated, len(scorer.reference)),
        "n_train_real": data.n_real, "n_train_synthetic": data.n_synthetic,
        **regime_labels(cfg),
        "sampling_bias": cfg.sampling_bias, "num_processes": run.state.num_processes,
        "sampling_dtype": run.sampling_dtype, "mixed_precision": run.mixed_precision,
        "ema_decay_effective": train_stats.get("ema_decay_effective", float("nan")),
        "cost_train_images": train_stats.get("train_images", data.train_steps * cfg.batch_size) + setup.train_images,
        "cost_sample_nfe": cfg.n_synthetic * nfe_per_image + setup.sample_nfe,
        "train_seconds": train_stats.get("seconds", float("nan")), "aux_seconds": setup.seconds,
        **seconds, **data.info, **setup.info, **memory_mb(),
    }


def summary(row: dict, generations: int) -> str:
    """The line a finished generation logs."""
    line = (f"gen {row['generation']}/{generations - 1} {row['regime']}: fid {row['fid']:.2f} precision "
            f"{row['precision']:.3f} recall {row['recall']:.3f} coverage {row['coverage']:.3f}")
    if "classes_covered" in row:
        line += f" classes {row['classes_covered']}"
    if "plain_fid" in row:
        line += f" (plain fid {row['plain_fid']:.2f})"
    health = f" health {row['health_seconds']:.1f}s" if row.get("health_seconds") else ""
    return line + (f" | train {row['train_seconds']:.1f}s aux {row['aux_seconds']:.1f}s "
                   f"sample {row['sample_seconds']:.1f}s{health} metrics {row['metric_seconds']:.1f}s")

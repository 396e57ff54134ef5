"""The self-consuming regimes: what D_t is, and which sampler draws S_t (DESIGN.md §2).

Generation 0 always trains on R_0 (n_real real images). For t >= 1:

    fully-synthetic          D_t = S_{t-1}                          MAD, fully synthetic loop
    synthetic-augmentation   D_t = R_0 ∪ S_{t-1}                    MAD
    fresh-data               D_t = R_t ∪ S_{t-1}, R_t fresh real    MAD
    accumulate               D_t = R_0 ∪ S_0 ∪ … ∪ S_{t-1}          Gerstgrasser et al.
    accumulate-subsample     uniform subsample of the above, n_real + n_synthetic     Kazdan et al.
    accumulate-growing       accumulate, training steps scaled by |D_t| / |D_0|     Gerstgrasser et al.
    curated                  D_t = R_0 ∪ top-q of S_{t-1} by a verifier              Ferbach/Feng et al.
    curated-balanced         D_t = R_0 ∪ top-q of S_{t-1} within each predicted class (the class-balanced control)
    self-correcting          D_t = R_0 ∪ C_γ(S_{t-1}), a correction applied to each sample          Gillman et al.
    sims                     as synthetic-augmentation, S_t drawn with the SIMS sampler
    neon                     as synthetic-augmentation, S_t drawn with Neon's merged model

Built-ins register exactly as a plug-in does (`register_regime`), declaring the config fields they
read (`uses`: they stay out of the generation-0 key, since generation 0 is R_0 for every regime) and the
unmitigated regime they are a mitigation of (`control`: the report pairs them against it).

A regime names real images by index into the dataset and synthetic sets by generation; the
generation (loops.generation) checks that and turns it into arrays: a regime can never put a
validation or reference image, or an index that is not there, into a training set.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from autophagy.config import ConfigError, RunConfig, class_weights, field_names, validate
from autophagy.seeding import rng_for
from loops.training_set import TrainingSet, check_training_set  # noqa: F401 (the plug-in API imports both from here)


class RealDraws:
    """What a regime's `build(t, draws)` may read: R_0 and the fresh draws R_t of a run (a seeded
    permutation of the pool cut into consecutive, disjoint slices; with `allow_reuse`, draws past the
    end of the pool are taken with replacement), the run's config, and in a running loop the saved
    samples of earlier generations (`samples(g)`), a verifier trained on the real pool only
    (`verifier(images) -> (confidence, predicted class)`), the pixels of real draws (`real(indices) ->
    (images, labels)`) and `once(key, make)`, which computes what a run needs in every generation
    (e.g. a fitted correction) once per run."""

    def __init__(self, pool: np.ndarray, cfg: RunConfig, samples=None, verifier=None, num_classes: int = 0,
                 images: np.ndarray | None = None, labels: np.ndarray | None = None):
        self.pool, self.cfg = pool, cfg
        self.pool_members = np.sort(pool)
        self.order = pool[rng_for(cfg.seed, "real_draw").permutation(len(pool))]
        self.samples, self.verifier, self.num_classes = samples, verifier, num_classes
        self._images, self._labels, self._once = images, labels, {}
        if cfg.class_weights:
            self.order = self._imbalanced(self.order)

    def _imbalanced(self, order: np.ndarray) -> np.ndarray:
        """--class-weights: R_0 (the first n_real of the order) with round(n_real · w_c / Σw) images of
        class c, each class's first members in the seeded order; the rest of the pool follows as before."""
        weights = np.asarray(class_weights(self.cfg))
        if self._labels is None:
            raise ConfigError(f"--class-weights: {self.cfg.data!r} has no class labels")
        if len(weights) != self.num_classes:
            raise ConfigError(f"--class-weights: {self.cfg.class_weights!r} gives {len(weights)} weights; "
                              f"{self.cfg.data!r} has {self.num_classes} classes")
        counts = np.floor(self.cfg.n_real * weights / weights.sum()).astype(int)
        remainder = self.cfg.n_real * weights / weights.sum() - counts
        counts[np.argsort(-remainder, kind="stable")[:self.cfg.n_real - counts.sum()]] += 1  # sums to n_real
        classes = self._labels[order]
        chosen = []
        for c, count in enumerate(counts):
            members = np.flatnonzero(classes == c)
            if len(members) < count:
                raise ConfigError(f"--class-weights: R_0 needs {count} images of class {c}; the pool holds {len(members)}")
            chosen.append(members[:count])
        first = np.sort(np.concatenate(chosen))
        return np.concatenate([order[first], np.delete(order, first)])

    def real(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The images (and labels) of real draws; only members of the training pool."""
        if not np.isin(indices, self.pool_members).all():
            raise ConfigError("--regime: a regime asked for real images outside the training pool")
        return self._images[indices], None if self._labels is None else self._labels[indices]

    def once(self, key: str, make):
        if key not in self._once:
            self._once[key] = make()
        return self._once[key]

    def draw(self, t: int) -> np.ndarray:
        n_real, n_fresh = self.cfg.n_real, self.cfg.fresh_per_generation
        start, size = (0, n_real) if t == 0 else (n_real + (t - 1) * n_fresh, n_fresh)
        if start + size <= len(self.order):
            return self.order[start:start + size]
        if not self.cfg.allow_reuse:
            raise ConfigError(f"--n-real-fresh: real draw {t} needs images {start}..{start + size} of a pool of {len(self.order)}")
        return rng_for(self.cfg.seed, "reuse", t).choice(self.pool, size, replace=True)


def images_needed(cfg: RunConfig, regime_name: str) -> int:
    """Real images (pool + reference) the run needs without reuse."""
    fresh = (cfg.generations - 1) * cfg.fresh_per_generation if REGIMES[regime_name].fresh_real else 0
    return cfg.n_real + fresh + cfg.n_reference + cfg.n_validation


def check_pool(cfg: RunConfig, n_images: int) -> None:
    """Refuse, before any work, a run whose dataset cannot supply the requested real images."""
    regime = REGIMES[cfg.regime]
    if cfg.n_real + cfg.n_reference + cfg.n_validation > n_images:
        raise ConfigError(f"--n-real: {cfg.n_real} real + {cfg.n_reference} reference + {cfg.n_validation} validation "
                          f"images are needed but {cfg.data!r} holds {n_images}")
    need = images_needed(cfg, cfg.regime)
    if regime.fresh_real and need > n_images and not cfg.allow_reuse:
        raise ConfigError(f"--n-real-fresh: {cfg.regime} over {cfg.generations} generations needs {need} real images "
                          f"({cfg.n_real} + {cfg.generations - 1}x{cfg.fresh_per_generation} fresh + {cfg.n_reference} "
                          f"reference + {cfg.n_validation} validation) but {cfg.data!r} holds {n_images}; lower the counts or pass --allow-reuse")


@dataclass(frozen=True)
class Regime:
    build: Callable[[int, RealDraws], TrainingSet]   # D_t for t >= 1
    sampler: str | None = None                        # how S_t is drawn unless --sampler says otherwise (None: plain)
    fresh_real: bool = False                          # draws new real images every generation
    uses: tuple[str, ...] = ()                        # config fields build() reads (from generation 1 on)
    control: str | None = None                        # the unmitigated regime this one mitigates
    description: str = ""

    def training_set(self, t: int, draws: RealDraws) -> TrainingSet:
        return TrainingSet(draws.draw(0), ()) if t == 0 else self.build(t, draws)


REGIMES: dict[str, Regime] = {}


def register_regime(name: str, build: Callable[[int, RealDraws], TrainingSet], *, sampler: str | None = None,
                    fresh_real: bool = False, uses: tuple[str, ...] = (), control: str | None = None,
                    description: str = "") -> None:
    """Add a regime: `build(t, draws)` returns D_t for t >= 1 as a TrainingSet (generation 0 is always
    R_0 = draws.draw(0)); `sampler` names how its S_t are drawn by default, `uses` the config fields
    build() reads, `control` the regime it is a mitigation of. A taken name is refused."""
    if name in REGIMES:
        raise ConfigError(f"--plugin: regime {name!r} is already registered; choose another name")
    unknown = [f for f in uses if f not in field_names()]
    if unknown:
        raise ConfigError(f"--plugin: regime {name!r} declares uses={unknown}, which are not config fields")
    REGIMES[name] = Regime(build, sampler, fresh_real, tuple(uses), control, description)


def regime_fields() -> set[str]:
    """Every config field some registered regime reads (none of them matters to generation 0)."""
    return {f for r in REGIMES.values() for f in r.uses} | {"n_real_fresh", "allow_reuse"}


NO_REAL = np.empty(0, dtype=np.int64)


def accumulate_subsample(t: int, draws: RealDraws) -> TrainingSet:
    """Kazdan et al. 2024: a seeded uniform subsample of R_0 ∪ S_0 ∪ … ∪ S_{t-1} of n_real + n_synthetic."""
    cfg = draws.cfg
    sizes = [cfg.n_real] + [cfg.n_synthetic] * t
    budget = min(cfg.n_real + cfg.n_synthetic, sum(sizes))
    chosen = np.sort(rng_for(cfg.seed, "subsample", t).choice(sum(sizes), budget, replace=False))
    offsets = np.cumsum([0] + sizes)
    real = draws.draw(0)[chosen[chosen < offsets[1]]]
    parts = {g: chosen[(chosen >= offsets[g + 1]) & (chosen < offsets[g + 2])] - offsets[g + 1] for g in range(t)}
    return TrainingSet(real, tuple(range(t)), parts)


def curated(t: int, draws: RealDraws) -> TrainingSet:
    """R_0 ∪ the top-q of S_{t-1} by the verifier's confidence (Ferbach et al. 2024; Feng et al. 2025)."""
    images, _ = draws.samples(t - 1)
    confidence, predicted = draws.verifier(images)
    keep = max(1, int(round(draws.cfg.curation_keep * len(images))))
    kept = np.sort(np.argsort(-confidence, kind="stable")[:keep])
    histogram = np.bincount(predicted[kept], minlength=draws.num_classes).tolist() if draws.num_classes else []
    return TrainingSet(draws.draw(0), (t - 1,), {t - 1: kept},
                       {"curation_kept_fraction": keep / len(images), "curation_kept_histogram": histogram})


def growing_steps(t: int, cfg) -> dict:
    """The training budget of accumulate-growing's generation t: train_steps · |D_t| / |D_0| with
    |D_t| = n_real + t · n_synthetic, and its scale (for the row)."""
    scale = (cfg.n_real + t * cfg.n_synthetic) / cfg.n_real
    return {"train_steps": int(round(cfg.train_steps * scale)), "train_steps_scale": scale}


def accumulate_growing(t: int, draws: RealDraws) -> TrainingSet:
    """Gerstgrasser et al. 2024: R_0 ∪ S_0 ∪ … ∪ S_{t-1}, trained for train_steps · |D_t| / |D_0| steps, so
    every image is seen as often as in generation 0 (their stability result assumes training grows with
    the data)."""
    budget = growing_steps(t, draws.cfg)
    return TrainingSet(draws.draw(0), tuple(range(t)), train_steps=budget["train_steps"], info=budget)


def augmentation_growing(t: int, draws: RealDraws) -> TrainingSet:
    """The budget control of accumulate-growing: synthetic-augmentation's R_0 ∪ S_{t-1}, trained for as
    many steps as accumulate-growing's generation t, so the two differ only in keeping the older S_g."""
    budget = growing_steps(t, draws.cfg)
    return TrainingSet(draws.draw(0), (t - 1,), train_steps=budget["train_steps"], info=budget)


def self_correcting(t: int, draws: RealDraws) -> TrainingSet:
    """Gillman et al. 2024: D_t = R_0 ∪ C_γ(S_{t-1}), every synthetic image moved a fraction γ of the way
    to its correction C(x) (loops.corrections) fitted on R_0; the class of a sample is its own label in
    a class-conditional run, else the prediction of the lenet classifier trained on the real pool only."""
    from loops.corrections import CORRECTIONS, blend
    cfg = draws.cfg
    images, labels = draws.samples(t - 1)
    classes = labels if labels is not None else draws.verifier(images)[1]
    project = draws.once("correction", lambda: CORRECTIONS[cfg.correction].fit(*draws.real(draws.draw(0)), cfg))
    corrected = blend(images, project(images, classes), cfg.correction_strength)
    difference = (corrected.astype(np.float64) - images) / 255.0
    moved = np.sqrt((difference ** 2).sum(axis=(1, 2, 3))).mean() if len(images) else 0.0  # mean L2, pixels in [0, 1]
    return TrainingSet(draws.draw(0), (t - 1,), replaced={t - 1: corrected},
                       info={"correction_moved_l2": float(moved)})


def curated_balanced(t: int, draws: RealDraws) -> TrainingSet:
    """R_0 ∪ the top-q of each predicted class of S_{t-1} by the verifier's confidence: the curated loop
    without its class bias (the verifier alone keeps far more of its confident classes)."""
    images, _ = draws.samples(t - 1)
    confidence, predicted = draws.verifier(images)
    kept = []
    for c in np.unique(predicted):
        members = np.flatnonzero(predicted == c)
        keep = max(1, int(round(draws.cfg.curation_keep * len(members))))
        kept.append(members[np.argsort(-confidence[members], kind="stable")[:keep]])
    kept = np.sort(np.concatenate(kept))
    histogram = np.bincount(predicted[kept], minlength=draws.num_classes).tolist() if draws.num_classes else []
    return TrainingSet(draws.draw(0), (t - 1,), {t - 1: kept},
                       {"curation_kept_fraction": len(kept) / len(images), "curation_kept_histogram": histogram})


register_regime("fully-synthetic", lambda t, d: TrainingSet(NO_REAL, (t - 1,)),
                description="D_t = S_{t-1} (MAD's fully synthetic loop)")
register_regime("synthetic-augmentation", lambda t, d: TrainingSet(d.draw(0), (t - 1,)),
                description="D_t = R_0 ∪ S_{t-1} (MAD)")
register_regime("fresh-data", lambda t, d: TrainingSet(d.draw(t), (t - 1,)), fresh_real=True,
                uses=("n_real_fresh", "allow_reuse"),
                description="D_t = R_t ∪ S_{t-1}, R_t fresh real images (MAD)")
register_regime("accumulate", lambda t, d: TrainingSet(d.draw(0), tuple(range(t))),
                description="D_t = R_0 ∪ S_0 ∪ … ∪ S_{t-1} (Gerstgrasser et al.)")
register_regime("accumulate-subsample", accumulate_subsample,
                description="a uniform subsample of R_0 ∪ S_0 ∪ … ∪ S_{t-1} of size n_real + n_synthetic (Kazdan et al.)")
register_regime("sims", lambda t, d: TrainingSet(d.draw(0), (t - 1,)), sampler="sims",
                control="synthetic-augmentation",
                description="D_t = R_0 ∪ S_{t-1}, S_t drawn with the SIMS sampler (SIMS §4)")
register_regime("neon", lambda t, d: TrainingSet(d.draw(0), (t - 1,)), sampler="neon",
                control="synthetic-augmentation",
                description="D_t = R_0 ∪ S_{t-1}, S_t drawn with Neon's merged model (Neon)")
register_regime("accumulate-growing", accumulate_growing, control="accumulate",
                description="accumulate with training steps scaled by |D_t| / |D_0| (Gerstgrasser et al.)")
register_regime("synthetic-augmentation-growing", augmentation_growing,
                description="R_0 ∪ S_{t-1} trained as long as accumulate-growing's generation t (its budget control)")
register_regime("curated-balanced", curated_balanced, uses=("curation_keep",), control="synthetic-augmentation",
                description="D_t = R_0 ∪ top-q of each predicted class of S_{t-1} (class-balanced curation)")
register_regime("self-correcting", self_correcting, uses=("correction", "correction_strength", "correction_clusters"),
                control="synthetic-augmentation",
                description="D_t = R_0 ∪ C_γ(S_{t-1}), each synthetic image moved γ of the way to its correction "
                            "(Gillman et al.)")
register_regime("curated", curated, uses=("curation_keep",), control="synthetic-augmentation",
                description="D_t = R_0 ∪ top-q of S_{t-1} by a verifier trained on the real pool (curated loops)")


def method_fields(cfg: RunConfig) -> tuple[str, ...]:
    """The config fields this run's regime and sampler declare that they read."""
    from loops.samplers import SAMPLERS
    return tuple(dict.fromkeys(REGIMES[cfg.regime].uses + SAMPLERS[sampler_of(cfg)].uses))


def as_read(cfg: RunConfig) -> RunConfig:
    """The run as its regime and sampler read it: the fields that other registered regimes and samplers
    read but these two do not are set to their defaults, so a folder whose config differs only there (a
    preset that since tuned Neon's w, read by a synthetic-augmentation run) holds the same run; n_eval is
    the number of images scored."""
    from loops.samplers import SAMPLERS, sampler_fields
    sampler = sampler_of(cfg)
    unread = (regime_fields() | sampler_fields()) - set(REGIMES[cfg.regime].uses) - set(SAMPLERS[sampler].uses)
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.name in unread}
    # --n-eval 0 scores all of S_t: the same run as n_eval = n_synthetic (a folder from before the field)
    return dataclasses.replace(cfg, **defaults, n_eval=cfg.scored_images)


def sampler_of(cfg: RunConfig) -> str:
    """How S_t is drawn: --sampler when given, else the regime's own sampler."""
    return cfg.sampler or REGIMES[cfg.regime].sampler or "plain"


def validate_run(cfg: RunConfig) -> RunConfig:
    """The engine's validation plus the regime and the sampler (both registries) and data that must be
    fetched first, before any work."""
    from autophagy.data import check_available
    from loops.samplers import SAMPLERS
    check_available(cfg.data)
    if cfg.regime not in REGIMES:
        raise ConfigError(f"--regime: {cfg.regime!r} is not allowed; choose one of {', '.join(REGIMES)}")
    if "correction" in REGIMES[cfg.regime].uses:
        from loops.corrections import CORRECTIONS
        if cfg.correction not in CORRECTIONS:
            raise ConfigError(f"--correction: {cfg.correction!r} is not allowed; choose one of {', '.join(CORRECTIONS)}")
    if cfg.sampler and cfg.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler: {cfg.sampler!r} is not allowed; choose one of {', '.join(SAMPLERS)}")
    if cfg.target_distribution and "target_distribution" not in SAMPLERS[sampler_of(cfg)].uses:
        raise ConfigError(f"--target-distribution: the {sampler_of(cfg)!r} sampler cannot shift a distribution; "
                          f"use --sampler sims (or --regime sims)")
    return validate(cfg)

"""The self-consuming regimes: what D_t is, and which sampler draws S_t (DESIGN.md §2).

Generation 0 always trains on R_0 (n_real real images). For t >= 1:

    fully-synthetic          D_t = S_{t-1}                          MAD, fully synthetic loop
    synthetic-augmentation   D_t = R_0 ∪ S_{t-1}                    MAD
    fresh-data               D_t = R_t ∪ S_{t-1}, R_t fresh real    MAD
    accumulate               D_t = R_0 ∪ S_0 ∪ … ∪ S_{t-1}          Gerstgrasser et al.
    accumulate-subsample     uniform subsample of the above, n_real + n_synthetic     Kazdan et al.
    curated                  D_t = R_0 ∪ top-q of S_{t-1} by a verifier              Ferbach/Feng et al.
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

from dataclasses import dataclass
from typing import Callable

import numpy as np

from autophagy.config import ConfigError, RunConfig, field_names, validate
from autophagy.seeding import rng_for


@dataclass(frozen=True)
class TrainingSet:
    real_indices: np.ndarray                 # indices into the dataset's images (members of the pool)
    synthetic_generations: tuple[int, ...]   # generations whose S_t are included
    synthetic_indices: dict | None = None    # {generation: indices into its S_t} to keep a subset; None = all
    info: dict | None = None                 # extra fields for the metrics row (e.g. what curation kept)

    def synthetic_parts(self):
        """(generation, indices into S_g or None for all of it) for every synthetic part of D_t."""
        chosen = self.synthetic_indices or {}
        return [(g, chosen.get(g)) for g in self.synthetic_generations]


class RealDraws:
    """What a regime's `build(t, draws)` may read: R_0 and the fresh draws R_t of a run (a seeded
    permutation of the pool cut into consecutive, disjoint slices; with `allow_reuse`, draws past the
    end of the pool are taken with replacement), the run's config, and in a running loop the saved
    samples of earlier generations (`samples(g)`) and a verifier trained on the real pool only
    (`verifier(images) -> (confidence, predicted class)`)."""

    def __init__(self, pool: np.ndarray, cfg: RunConfig, samples=None, verifier=None, num_classes: int = 0):
        self.pool, self.cfg = pool, cfg
        self.pool_members = np.sort(pool)
        self.order = pool[rng_for(cfg.seed, "real_draw").permutation(len(pool))]
        self.samples, self.verifier, self.num_classes = samples, verifier, num_classes

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


def _bad(name: str, t: int, problem: str) -> ConfigError:
    return ConfigError(f"--regime: {name!r} built a training set for generation {t} that {problem}")


def check_training_set(name: str, t: int, ts: TrainingSet, pool_members: np.ndarray, size_of) -> None:
    """Refuse a TrainingSet that is not one: wrong types, real images outside the training pool (the
    validation and reference splits can never be trained on), synthetic parts of generations that do
    not exist yet or indices outside them (`size_of(g)`: |S_g|)."""
    if not isinstance(ts, TrainingSet):
        raise _bad(name, t, f"is a {type(ts).__name__}, not a TrainingSet")
    real = ts.real_indices
    if not isinstance(real, np.ndarray) or real.ndim != 1 or (len(real) and not np.issubdtype(real.dtype, np.integer)):
        raise _bad(name, t, f"has real_indices of type {type(real).__name__}; give a 1-d integer numpy array")
    outside = real[~np.isin(real, pool_members)]
    if len(outside):
        raise _bad(name, t, f"names {len(outside)} real image(s) outside the training pool (e.g. index "
                            f"{int(outside[0])}); use indices from draws.draw(...) only")
    if not isinstance(ts.synthetic_generations, tuple):
        raise _bad(name, t, f"has synthetic_generations of type {type(ts.synthetic_generations).__name__}; give a tuple")
    if ts.synthetic_indices is not None and not isinstance(ts.synthetic_indices, dict):
        raise _bad(name, t, f"has synthetic_indices of type {type(ts.synthetic_indices).__name__}; give a dict")
    for g, indices in ts.synthetic_parts():
        if not isinstance(g, (int, np.integer)) or not 0 <= g < t:
            raise _bad(name, t, f"uses the synthetic set of generation {g!r}; only generations 0..{t - 1} exist")
        if indices is None:
            continue
        if not isinstance(indices, np.ndarray) or indices.ndim != 1 or (len(indices) and not np.issubdtype(indices.dtype, np.integer)):
            raise _bad(name, t, f"keeps a subset of S_{g} of type {type(indices).__name__}; give a 1-d integer numpy array")
        if len(indices) and (indices.min() < 0 or indices.max() >= size_of(g)):
            raise _bad(name, t, f"keeps indices outside S_{g} (0..{size_of(g) - 1})")


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
register_regime("curated", curated, uses=("curation_keep",), control="synthetic-augmentation",
                description="D_t = R_0 ∪ top-q of S_{t-1} by a verifier trained on the real pool (curated loops)")


def method_fields(cfg: RunConfig) -> tuple[str, ...]:
    """The config fields this run's regime and sampler declare that they read."""
    from loops.samplers import SAMPLERS
    return tuple(dict.fromkeys(REGIMES[cfg.regime].uses + SAMPLERS[sampler_of(cfg)].uses))


def sampler_of(cfg: RunConfig) -> str:
    """How S_t is drawn: --sampler when given, else the regime's own sampler."""
    return cfg.sampler or REGIMES[cfg.regime].sampler or "plain"


def validate_run(cfg: RunConfig) -> RunConfig:
    """The engine's validation plus the regime and the sampler (both registries), before any work."""
    from loops.samplers import SAMPLERS
    if cfg.regime not in REGIMES:
        raise ConfigError(f"--regime: {cfg.regime!r} is not allowed; choose one of {', '.join(REGIMES)}")
    if cfg.sampler and cfg.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler: {cfg.sampler!r} is not allowed; choose one of {', '.join(SAMPLERS)}")
    return validate(cfg)

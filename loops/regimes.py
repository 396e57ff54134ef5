"""The self-consuming regimes: what D_t is, and which sampler draws S_t (DESIGN.md §2).

Generation 0 always trains on R_0 (n_real real images). For t >= 1:

    fully-synthetic          D_t = S_{t-1}                          MAD, fully synthetic loop
    synthetic-augmentation   D_t = R_0 ∪ S_{t-1}                    MAD
    fresh-data               D_t = R_t ∪ S_{t-1}, R_t fresh real    MAD
    accumulate               D_t = R_0 ∪ S_0 ∪ … ∪ S_{t-1}          Gerstgrasser et al.
    sims                     as synthetic-augmentation, S_t drawn with the SIMS sampler

A regime names real images by index into the dataset and synthetic sets by generation; the
orchestrator turns that into arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from autophagy.config import ConfigError, RunConfig, validate
from autophagy.seeding import rng_for


@dataclass(frozen=True)
class TrainingSet:
    real_indices: np.ndarray                 # indices into the dataset's images (members of the pool)
    synthetic_generations: tuple[int, ...]   # generations whose S_t are included


class RealDraws:
    """R_0 and the fresh draws R_t of a run: a seeded permutation of the pool cut into consecutive,
    disjoint slices; with `allow_reuse`, draws past the end of the pool are taken with replacement."""

    def __init__(self, pool: np.ndarray, cfg: RunConfig):
        self.pool, self.cfg = pool, cfg
        self.order = pool[rng_for(cfg.seed, "real_draw").permutation(len(pool))]

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
    return cfg.n_real + fresh + cfg.n_reference


def check_pool(cfg: RunConfig, n_images: int) -> None:
    """Refuse, before any work, a run whose dataset cannot supply the requested real images."""
    regime = REGIMES[cfg.regime]
    if cfg.n_real + cfg.n_reference > n_images:
        raise ConfigError(f"--n-real: {cfg.n_real} real + {cfg.n_reference} reference images are needed but "
                          f"{cfg.data!r} holds {n_images}")
    need = images_needed(cfg, cfg.regime)
    if regime.fresh_real and need > n_images and not cfg.allow_reuse:
        raise ConfigError(f"--n-real-fresh: {cfg.regime} over {cfg.generations} generations needs {need} real images "
                          f"({cfg.n_real} + {cfg.generations - 1}x{cfg.fresh_per_generation} fresh + {cfg.n_reference} "
                          f"reference) but {cfg.data!r} holds {n_images}; lower the counts or pass --allow-reuse")


@dataclass(frozen=True)
class Regime:
    build: Callable[[int, RealDraws], TrainingSet]   # D_t for t >= 1
    sampler: str = "plain"                            # how S_t is drawn unless --sampler says otherwise
    fresh_real: bool = False                          # draws new real images every generation
    description: str = ""

    def training_set(self, t: int, draws: RealDraws) -> TrainingSet:
        return TrainingSet(draws.draw(0), ()) if t == 0 else self.build(t, draws)


REGIMES: dict[str, Regime] = {
    "fully-synthetic": Regime(
        lambda t, d: TrainingSet(np.empty(0, dtype=np.int64), (t - 1,)),
        description="D_t = S_{t-1} (MAD's fully synthetic loop)"),
    "synthetic-augmentation": Regime(
        lambda t, d: TrainingSet(d.draw(0), (t - 1,)),
        description="D_t = R_0 ∪ S_{t-1} (MAD)"),
    "fresh-data": Regime(
        lambda t, d: TrainingSet(d.draw(t), (t - 1,)), fresh_real=True,
        description="D_t = R_t ∪ S_{t-1}, R_t fresh real images (MAD)"),
    "accumulate": Regime(
        lambda t, d: TrainingSet(d.draw(0), tuple(range(t))),
        description="D_t = R_0 ∪ S_0 ∪ … ∪ S_{t-1} (Gerstgrasser et al.)"),
    "sims": Regime(
        lambda t, d: TrainingSet(d.draw(0), (t - 1,)), sampler="sims",
        description="D_t = R_0 ∪ S_{t-1}, S_t drawn with the SIMS sampler (SIMS §4)"),
}


def sampler_of(cfg: RunConfig) -> str:
    """How S_t is drawn: --sampler when given, else the regime's own sampler."""
    return cfg.sampler or REGIMES[cfg.regime].sampler


def validate_run(cfg: RunConfig) -> RunConfig:
    """The engine's validation plus the regime, before any work."""
    if cfg.regime not in REGIMES:
        raise ConfigError(f"--regime: {cfg.regime!r} is not allowed; choose one of {', '.join(REGIMES)}")
    return validate(cfg)

"""A run: for t = 0 .. G-1 build D_t, train θ_t, draw S_t, score it, mark it DONE (loops.generation),
with the run-level state every generation shares (data, draws, scorer, verifier, sampler).

To resume, run the same command again: finished generations (DONE) are skipped, rows and generation
files are checked against each other first (a lost row is restored from its generation's row.json).
"""
from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState

from autophagy import faults, threads
from autophagy.config import ConfigError, RunConfig, target_probabilities
from autophagy.data import RealData, load_real_data
from autophagy.features import resolve_features, train_lenet
from autophagy.hardware import resolve_mixed_precision, resolve_sampling_dtype
from autophagy.plugins import load_config_plugins
from autophagy.rundir import RunDir
from autophagy.training import make_accelerator
from loops.generation import run_generation
from loops.regimes import REGIMES, RealDraws, as_read, check_pool, sampler_of, validate_run
from loops.scoring import Scorer, build_scorer
from loops.tracker import Tracker


def resolve_config(cfg: RunConfig, plugin_dir: Path | None = None) -> RunConfig:
    """A config ready to run in this process: its plug-ins imported (so their regimes and samplers are
    registered here too: a Ray worker, rescore), then validated."""
    load_config_plugins(cfg.plugins, plugin_dir)
    return validate_run(cfg)


def load_data_for(cfg: RunConfig) -> RealData:
    real = load_real_data(cfg.data, cfg.resolution, cfg.n_reference, cfg.n_validation, cfg.skip_unreadable)
    check_pool(cfg, len(real.images))
    if cfg.features == "lenet" and real.labels is None:
        raise ConfigError(f"--features: 'lenet' needs class labels and {cfg.data!r} has none; use --features auto "
                          f"(an autoencoder trained on the pool, offline) or inception")
    q = target_probabilities(cfg)
    if q and real.labels is None:
        raise ConfigError(f"--target-distribution: {cfg.data!r} has no class labels, so no class mix can be "
                          f"targeted (the classes of samples come from a classifier of the real labels)")
    if q and len(q) != real.num_classes:
        raise ConfigError(f"--target-distribution: {len(q)} probabilities given but {cfg.data!r} has "
                          f"{real.num_classes} classes; give one per class")
    if cfg.sampling_bias < 1 and real.labels is None:
        raise ConfigError(f"--sampling-bias: {cfg.sampling_bias} needs class labels and {cfg.data!r} has none; "
                          f"use --sampling-bias 1")
    if cfg.conditioning == "class" and real.labels is None:
        raise ConfigError(f"--conditioning: 'class' needs class labels and {cfg.data!r} has none; use --conditioning "
                          f"none or auto")
    return real


def process_state() -> PartialState:
    # cpu=True on a machine without CUDA: how accelerate recognises a multi-process CPU (gloo) launch
    return PartialState(cpu=not torch.cuda.is_available())


def run_loop(cfg: RunConfig, out: Path | str, overwrite: bool = False, log=print, threads_requested: int = 0) -> RunDir:
    """Run (or resume) every generation of `cfg` into the run folder `out` (`threads_requested`: torch
    threads, 0 = a share of the cores by what else autophagy runs here, autophagy.threads)."""
    cfg = resolve_config(cfg)
    real = load_data_for(cfg)           # fails fast on data and pool sizes, before the folder is touched
    state = process_state()
    rd = RunDir(out)
    with rd.locked() if state.is_main_process else nullcontext(), threads.claim(threads_requested):
        if state.is_main_process:
            if overwrite and rd.root.exists():
                rd.clear()
            if not overwrite:  # the folder, its config and its rows checked before anything is written
                rd.check_is_run_folder()
                rd.saved_config()
                rd.restore_rows(log)
            rd.check_or_write_config(cfg, overwrite, num_processes=state.num_processes, resolve=lambda c: (
                dataclasses.replace(as_read(c), features=resolve_features(c.features, real))))
        faults.barrier(state)
        run = RunState(cfg, rd, real, state, log)
        tracker = Tracker(cfg, rd)
        for t in range(cfg.generations):
            if not rd.is_done(t):
                run_generation(run, t)
                tracker.log_generation(rd, t)
        tracker.finish()
    return rd


class RunState:
    """Run-level state: the real data and its draws, the scorer, the verifier, the regime and sampler."""

    def __init__(self, cfg: RunConfig, rd: RunDir, real: RealData, state: PartialState, log=print):
        self.cfg, self.rd, self.real, self.state, self.log = cfg, rd, real, state, log
        self.regime = REGIMES[cfg.regime]
        self.sampler_name = sampler_of(cfg)
        self.draws = RealDraws(real.pool, cfg, samples=rd.load_samples, verifier=self.verifier,
                               num_classes=real.num_classes, images=real.images, labels=real.labels)
        self.sampling_dtype = resolve_sampling_dtype(cfg.sampling_dtype, state.device.type)
        self.mixed_precision = resolve_mixed_precision(cfg.mixed_precision, state.device.type)
        self._scorer, self._verifier = None, None

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:  # built on first use: a finished run does no metric work
            self._scorer = build_scorer(self.cfg, self.rd, self.real, self.draws.draw(0))
        return self._scorer

    def verifier(self, images: np.ndarray):
        """The curated loop's verifier: the lenet classifier trained on the real pool only."""
        if self.real.labels is None:
            raise ConfigError(f"--regime: {self.cfg.regime!r} needs a verifier, which needs class labels; "
                              f"{self.cfg.data!r} has none")
        if self._verifier is None:  # loaded from the cache once per run, not once per generation
            self._verifier = train_lenet(self.real)
        return self._verifier.confidence(images)

    def classify(self, images: np.ndarray) -> np.ndarray | None:
        """Classes of images by the lenet classifier trained on the real pool only (None without labels)."""
        if self.real.labels is None:
            return None
        if self._verifier is None:
            self._verifier = train_lenet(self.real)
        return self._verifier.classify(images)

    def sampling_autocast(self):
        if self.mixed_precision != "no":
            return make_accelerator(self.cfg).autocast
        if self.sampling_dtype == "bfloat16":
            return lambda: torch.autocast(self.state.device.type, dtype=torch.bfloat16)
        return None

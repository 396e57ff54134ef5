"""One generation t, top to bottom: the training set D_t, the base model θ_t, the sampler, the draws,
the score, the row, DONE. `GenerationContext` is what samplers get (it implements
loops.samplers.SamplerContext); `run_generation` is the generation itself.

To resume, run the same command again: inside an unfinished generation a saved model skips training,
a training checkpoint resumes it, and saved sample chunks are kept.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DModel
from tqdm.auto import tqdm

from autophagy import faults
from autophagy.config import ConfigError
from autophagy.metrics import memorization
from autophagy.models import build_unet
from autophagy.rundir import atomic_save_npz, atomic_write_bytes, load_npz
from autophagy.sampling import GuidedDenoiser, chunk_sizes, sample_chunks
from autophagy.seeding import seed_for
from autophagy.training import quiet_unless_main
from loops import artifacts, rows
from loops.regimes import check_training_set
from loops.samplers import SAMPLERS

# role integers in the seeds of training and sampling (θ_t and S_t, the auxiliary model, health draws)
ROLES = {"sample": 0, "aux_sample": 1, "plain_sample": 2, "calibration_sample": 3}
BASE, AUX = 0, 1


class GenerationContext:
    """Generation t of a run: what a sampler may call (loops.samplers.SamplerContext) and the steps
    `run_generation` takes."""

    def __init__(self, run, t: int):
        self.run, self.t = run, t                      # run: loops.run.RunState
        self.cfg, self.run_dir, self.state, self.device = run.cfg, run.rd, run.state, run.state.device
        self.work_dir = run.rd.work_dir(t)
        self.class_guidance_weight = 1.0 / self.cfg.sampling_bias - 1.0

    # --- D_t
    def training_data(self) -> rows.TrainingData:
        real, rd = self.run.real, self.run_dir
        ts = self.run.regime.training_set(self.t, self.run.draws)
        loaded = {}  # S_g read from disk once, for the check and for the arrays

        def samples(g):
            if g not in loaded:
                loaded[g] = rd.load_samples(g)
            return loaded[g]
        check_training_set(self.cfg.regime, self.t, ts, self.run.draws.pool_members, size_of=lambda g: len(samples(g)[0]),
                           shape_of=lambda g: samples(g)[0].shape[1:])
        replaced = ts.replaced or {}
        parts, labels = [real.images[ts.real_indices]], [real.labels[ts.real_indices] if real.labels is not None else None]
        for g, indices in ts.synthetic_parts():
            images, lab = samples(g)
            parts.append(replaced[g] if g in replaced else images if indices is None else images[indices])
            labels.append(None if lab is None else (lab if indices is None else lab[indices]))
        all_labels = None if any(lab is None for lab in labels) else np.concatenate(labels)
        images = np.concatenate(parts)
        return rows.TrainingData(images, all_labels, len(ts.real_indices), sum(len(p) for p in parts[1:]),
                                 ts.info or {}, self.fine_tuning_steps(len(images)) or ts.train_steps or self.loop_steps())

    def loop_steps(self) -> int:
        """θ_t's optimizer steps where neither the regime nor --finetune-epochs sets them: --loop-train-steps
        from generation 1 on (when set), else --train-steps."""
        return (self.t > 0 and self.cfg.loop_train_steps) or self.cfg.train_steps

    def fine_tuning(self) -> bool:
        """Whether θ_t continues θ_{t-1} (--init previous, t >= 1) rather than starting from scratch."""
        return self.cfg.init == "previous" and self.t > 0

    def fine_tuning_steps(self, n_images: int) -> int:
        """--finetune-epochs passes over D_t in steps (0: not set, or not fine-tuning): an epoch-based budget,
        as Gillman et al.'s loop fine-tunes one epoch a generation; it replaces a regime's own step count."""
        if not (self.fine_tuning() and self.cfg.finetune_epochs):
            return 0
        return max(1, math.ceil(self.cfg.finetune_epochs * n_images / self.cfg.batch_size))

    # --- models
    def base_model(self, data: rows.TrainingData) -> tuple[UNet2DModel, dict]:
        """θ_t: trained from scratch on D_t (MAD's protocol), or fine-tuned from θ_{t-1} with --init previous."""
        def make():
            if self.fine_tuning():
                return artifacts.load_unet(self.run_dir.check_model(self.t - 1))
            torch.manual_seed(seed_for(self.cfg.seed, "init", self.t))  # initial weights derive from integers
            return build_unet(self.cfg, self.run.real.channels, self.run.real.num_classes)
        cfg = self.cfg
        if self.fine_tuning() and cfg.finetune_learning_rate:
            cfg = dataclasses.replace(cfg, learning_rate=cfg.finetune_learning_rate)
        return artifacts.trained(self.state, cfg, self.run_dir.model_dir(self.t), make, data.images, data.labels,
                                 train_steps=data.train_steps, seed_ints=(self.cfg.seed, self.t, BASE),
                                 checkpoint_dir=self.work_dir / "checkpoints_base", description=f"gen {self.t} train",
                                 legacy_stats=self.work_dir / "train.json")

    def fine_tune(self, model, images, labels, name: str, *, train_steps: int, learning_rate: float | None = None,
                  warmup_steps: int = 0) -> tuple[UNet2DModel, dict]:
        cfg = dataclasses.replace(self.cfg, learning_rate=learning_rate or self.cfg.learning_rate,
                                  lr_warmup_steps=warmup_steps)
        return artifacts.trained(self.state, cfg, self.run_dir.gen(self.t) / name, lambda: copy.deepcopy(model),
                                 images, labels, train_steps=train_steps, seed_ints=(self.cfg.seed, self.t, AUX),
                                 checkpoint_dir=self.work_dir / f"checkpoints_{name}", description=f"gen {self.t} {name}",
                                 legacy_stats=self.work_dir / "aux.json" if name == "aux_model" else None)

    def auxiliary_model(self, base, name: str = "aux_model", *, n_images: int | None = None,
                        train_steps: int | None = None, learning_rate: float | None = None,
                        warmup_steps: int = 0, select=None) -> tuple[UNet2DModel, dict]:
        cfg, start = self.cfg, time.perf_counter()
        n_images, train_steps = n_images or cfg.n_aux, train_steps or cfg.aux_train_steps
        images, labels, unguided = None, None, self.denoiser(base)
        exists = (self.run_dir.gen(self.t) / name).exists()
        faults.barrier(self.state)
        if not exists:
            images, labels = self.draw(unguided, n_images, "aux_sample")
            if select is not None:  # e.g. distribution shifting: the draws resampled to another class mix
                chosen = select(images)
                images, labels = images[chosen], (None if labels is None else labels[chosen])
        aux, stats = self.fine_tune(base, images, labels, name, train_steps=train_steps,
                                    learning_rate=learning_rate, warmup_steps=warmup_steps)
        return aux, {"train_images": stats.get("train_images", train_steps * cfg.batch_size),
                     "sample_nfe": n_images * cfg.sampling_steps * unguided.networks_per_step,
                     "seconds": time.perf_counter() - start}

    def classify(self, images: np.ndarray) -> np.ndarray | None:
        return self.run.classify(images)

    def saved_model(self, path: Path, make) -> UNet2DModel:
        return artifacts.saved_model(self.state, self.cfg, path, make)

    # --- sampling
    def denoiser(self, model: UNet2DModel) -> GuidedDenoiser:
        return GuidedDenoiser(model.to(self.device), class_guidance_weight=self.class_guidance_weight,
                              channels_last=self.cfg.channels_last)

    def draw(self, denoiser: GuidedDenoiser, n_images: int, purpose: str, folder: str = ""):
        """Sample n_images in chunks spread over the processes; chunks on disk survive interruptions."""
        cfg, state, t = self.cfg, self.state, self.t
        if purpose not in ROLES:
            raise ConfigError(f"--sampler: {self.run.sampler_name!r} draws for purpose {purpose!r}; use one of "
                              f"{', '.join(ROLES)}")
        default = "chunks" if purpose == "sample" else f"{purpose.removesuffix('_sample')}_chunks"
        chunk_dir = self.work_dir / (folder or default)
        n_chunks = len(chunk_sizes(n_images, cfg.sample_batch_size))
        mine = [i for i in range(n_chunks) if i % state.num_processes == state.process_index
                and load_npz(chunk_dir / f"chunk_{i:04d}.npz", ("images",), damaged_ok=True) is None]
        chunk_dir.mkdir(parents=True, exist_ok=True)
        results = {}
        bar = tqdm(total=n_images, desc=f"gen {t} {purpose.replace('_', ' ')}", leave=False, dynamic_ncols=True,
                   **quiet_unless_main(state.is_local_main_process))
        for index, images, labels in sample_chunks(denoiser, cfg, n_images, (cfg.seed, t, ROLES[purpose]),
                                                   purpose, self.run.real.num_classes, self.device, mine,
                                                   self.run.sampling_autocast()):
            arrays = {"images": images, **({"labels": labels} if labels is not None else {})}
            atomic_save_npz(chunk_dir / f"chunk_{index:04d}.npz", **arrays)
            faults.reached("sample", t, ROLES[purpose], index)
            results[index] = arrays
            bar.update(len(images))
        bar.close()
        faults.barrier(state)
        chunks = [results.get(i) or load_npz(chunk_dir / f"chunk_{i:04d}.npz", ("images",)) for i in range(n_chunks)]
        images = np.concatenate([c["images"] for c in chunks])
        labels = np.concatenate([c["labels"] for c in chunks]) if "labels" in chunks[0] else None
        return images, labels


def run_generation(run, t: int) -> None:
    """Generation t: D_t, θ_t, the sampler, S_t (and the model's own health draws when S_t is guided),
    the scores, the files, the row, DONE."""
    ctx = GenerationContext(run, t)
    if ctx.state.is_main_process:
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
    faults.barrier(ctx.state)
    data = ctx.training_data()
    base, train_stats = ctx.base_model(data)
    setup = SAMPLERS[run.sampler_name].build(ctx, base)

    start = time.perf_counter()
    n_synthetic, n_scored = ctx.cfg.n_synthetic, ctx.cfg.scored_images
    drawn, drawn_labels = ctx.draw(setup.denoiser, max(n_synthetic, n_scored), "sample")
    samples, labels = drawn[:n_synthetic], (None if drawn_labels is None else drawn_labels[:n_synthetic])
    scored = drawn[:n_scored]   # --n-eval: every run scored on as many images, whatever its S_t holds
    sample_seconds = time.perf_counter() - start
    health, health_seconds = None, 0.0
    if setup.guided:  # the model's own health: unguided samples from θ_t (no SIMS, CFG w = 0), n_reference
        start = time.perf_counter()
        health, _ = ctx.draw(GuidedDenoiser(base.to(ctx.device), channels_last=ctx.cfg.channels_last),
                             ctx.cfg.n_reference, "plain_sample")
        health_seconds = time.perf_counter() - start

    if ctx.state.is_main_process:
        faults.reached("metrics", t)
        scorer = run.scorer  # built once per run (feature extractor, reference), outside the timing
        start = time.perf_counter()
        subset_seed = seed_for(ctx.cfg.seed, "subset", t)
        scores = {**scorer.score(scored, subset_seed), "memorization": memorization(scored, data.images)}
        if health is not None:
            scores.update(rows.health_scores(scorer.score(health, subset_seed)))
        scores.update(rows.target_scores(ctx.cfg, scores, scorer, scored, health, t))
        metric_seconds = time.perf_counter() - start

        rd = ctx.run_dir
        atomic_save_npz(rd.samples_path(t), images=samples, **({"labels": labels} if labels is not None else {}))
        if n_scored > n_synthetic:  # the images drawn only to be scored, kept so that `rescore` scores the same set
            atomic_save_npz(rd.eval_samples_path(t), images=drawn[n_synthetic:])
        if health is not None:  # kept so that `rescore` can measure the model's health again
            atomic_save_npz(rd.health_samples_path(t), images=health)
        atomic_write_bytes(rd.grid_path(t), artifacts.grid_png(samples))
        row = rows.metrics_row(run, t, scores, data, train_stats, setup, scorer, len(scored),
                               {"sample_seconds": sample_seconds, "health_seconds": health_seconds,
                                "metric_seconds": metric_seconds})
        rd.append_row(row)
        rd.mark_done(t)
        faults.reached("done", t)
        run.log(rows.summary(row, ctx.cfg.generations))
    faults.barrier(ctx.state)

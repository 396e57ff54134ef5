"""How S_t is drawn from θ_t: a registry of samplers (plain, SIMS, Neon, and any plug-in's).

A sampler's `build(ctx, base)` gets the generation's `SamplerContext` (below: exactly what a sampler
may call) and the trained base model θ_t, and returns a `SamplerSetup`: the denoiser S_t is drawn with,
whether its samples are guided (then the loop also draws unguided samples from θ_t to score the model's
own health, the row's plain_* keys), and the extra compute it spent (auxiliary fine-tunes and auxiliary
samples), for the cost columns of the metrics row.

A registration declares the config fields the sampler reads (`uses`): they go into the metrics row,
into the generation-0 key (runs whose samplers read different values never share generation 0) and
into the report's labels; fields no run at hand uses stay out of its label.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from diffusers import UNet2DModel

from autophagy.config import ConfigError, RunConfig, field_names, target_probabilities
from autophagy.metrics import total_variation
from autophagy.rundir import RunDir
from autophagy.sampling import GuidedDenoiser
from autophagy.seeding import rng_for


class SamplerContext(Protocol):
    """What a sampler (built-in or plug-in) may use of the generation it draws S_t for."""
    cfg: RunConfig                  # the run's config
    t: int                          # the generation
    device: torch.device            # where the models live
    run_dir: RunDir                 # the run folder (paths of this generation's saved models)
    class_guidance_weight: float    # classifier-free guidance w = 1/λ − 1 of MAD's sampling bias (0: none)

    def denoiser(self, model: UNet2DModel) -> GuidedDenoiser:
        """Sampling from `model` as the loop samples (classifier-free guidance when λ < 1)."""

    def draw(self, denoiser: GuidedDenoiser, n_images: int, purpose: str,
             folder: str = "") -> tuple[np.ndarray, np.ndarray | None]:
        """n_images from `denoiser`, in resumable chunks spread over the processes; `purpose` names the
        seed stream and the chunk folder (e.g. "aux_sample"); `folder` another chunk folder for the same
        seeds (draws of several models with common random numbers)."""

    def fine_tune(self, model: UNet2DModel, images: np.ndarray, labels: np.ndarray | None, name: str, *,
                  train_steps: int, learning_rate: float | None = None,
                  warmup_steps: int = 0) -> tuple[UNet2DModel, dict]:
        """`model` trained further on `images` (saved as gen_t/<name>/ and loaded on resume), with its
        training stats (train_images, seconds, ...)."""

    def auxiliary_model(self, base: UNet2DModel, name: str = "aux_model", *, n_images: int | None = None,
                        train_steps: int | None = None, learning_rate: float | None = None,
                        warmup_steps: int = 0, select=None) -> tuple[UNet2DModel, dict]:
        """A copy of θ_t fine-tuned on n_images of its own samples (`select(images)` -> indices picks or
        resamples them first) (SIMS's and Neon's auxiliary model; the
        defaults are the config's n_aux and aux_train_steps at the base's learning rate), and its cost
        as SamplerSetup fields (train_images, sample_nfe, seconds)."""

    def classify(self, images: np.ndarray) -> np.ndarray | None:
        """Classes of images by the lenet classifier trained on the real pool only (None without labels)."""

    def saved_model(self, path: Path, make: Callable[[], UNet2DModel]) -> UNet2DModel:
        """The model saved at `path` by an interrupted run, or `make()`'s, saved there."""


@dataclass
class SamplerSetup:
    denoiser: GuidedDenoiser     # the network output S_t is drawn with
    guided: bool                 # not a plain draw from θ_t: the loop scores unguided health draws too (plain_*)
    train_images: int = 0        # images seen by the sampler's own training (auxiliary fine-tunes)
    sample_nfe: int = 0          # network evaluations x images of the sampler's own sampling (auxiliary draws)
    seconds: float = 0.0         # time of that extra work
    info: dict = field(default_factory=dict)  # the sampler's own row fields (e.g. calibration distances)


@dataclass(frozen=True)
class Sampler:
    build: Callable[[SamplerContext, UNet2DModel], SamplerSetup]
    uses: tuple[str, ...] = ()   # config fields the sampler reads
    description: str = ""
    sampling_only: tuple | Callable = ()  # of those, the fields that only combine finished models (ω, w),
                                          # or cfg -> such fields: points differing in them share
                                          # generation 0's trained models

    def sampling_only_fields(self, cfg: RunConfig) -> tuple[str, ...]:
        return tuple(self.sampling_only(cfg) if callable(self.sampling_only) else self.sampling_only)


SAMPLERS: dict[str, Sampler] = {}


def register_sampler(name: str, build: Callable[..., SamplerSetup], *, uses: tuple[str, ...] = (),
                     description: str = "", sampling_only: tuple[str, ...] | Callable = ()) -> None:
    """Add a sampler under `name`, declaring the config fields it reads and, among them, those that only
    combine models it has already trained (a sweep then trains generation 0's models once for all their
    values); a taken name or a field that is not a config field is refused."""
    if name in SAMPLERS:
        raise ConfigError(f"--plugin: sampler {name!r} is already registered; choose another name")
    unknown = [f for f in uses if f not in field_names()]
    if unknown:
        raise ConfigError(f"--plugin: sampler {name!r} declares uses={unknown}, which are not config fields")
    if not callable(sampling_only) and not set(sampling_only) <= set(uses):
        raise ConfigError(f"--plugin: sampler {name!r} declares sampling_only={list(sampling_only)} outside its uses")
    SAMPLERS[name] = Sampler(build, tuple(uses), description, sampling_only if callable(sampling_only) else tuple(sampling_only))


def sampler_fields() -> set[str]:
    """Every config field some registered sampler reads."""
    return {f for s in SAMPLERS.values() for f in s.uses}


def direct(ctx: SamplerContext, base: UNet2DModel) -> SamplerSetup:
    """S_t drawn from θ_t itself (with classifier-free guidance when the sampling bias λ < 1)."""
    denoiser = ctx.denoiser(base)
    return SamplerSetup(denoiser, guided=bool(denoiser.class_guidance_weight))


def sims(ctx: SamplerContext, base: UNet2DModel) -> SamplerSetup:
    """SIMS: fine-tune a copy of θ_t on n_aux of its own samples (the auxiliary model), then sample with
    (1 + ω)·out_base − ω·out_aux at every step. With --target-distribution q, the auxiliary model's
    samples are first resampled to the class mix that steers the guided samples to q (`shift_mix`), and
    with --shift-calibration N that mix is corrected N times by what the guided samples reach."""
    if target_probabilities(ctx.cfg):
        return shifted_sims(ctx, base)
    aux, cost = ctx.auxiliary_model(base)
    return SamplerSetup(sims_denoiser(ctx, base, aux), guided=True, **cost)


def sims_denoiser(ctx: SamplerContext, base: UNet2DModel, aux: UNet2DModel) -> GuidedDenoiser:
    return GuidedDenoiser(base, aux.to(ctx.device), ctx.cfg.guidance_weight, ctx.class_guidance_weight,
                          ctx.cfg.channels_last)


def shifted_sims(ctx: SamplerContext, base: UNet2DModel) -> SamplerSetup:
    """SIMS steered to the class mix q. Round 0 fine-tunes the auxiliary model on base samples resampled
    to `shift_mix`; each calibration round then draws n_aux guided samples (their own seed stream, the
    same seeds every round), measures their class mix g and fine-tunes a new auxiliary model from θ_t on
    the mix corrected by `recalibrate` (a class the guided samples over-fill gets more auxiliary samples,
    so guidance pushes away from it harder). The row keeps each round's distance to q."""
    cfg, q = ctx.cfg, np.asarray(target_probabilities(ctx.cfg))
    correction, distances, histograms = np.ones(len(q)), [], []
    total = {"train_images": 0, "sample_nfe": 0, "seconds": 0.0}
    for round_ in range(cfg.shift_calibration + 1):
        def select(images, correction=correction.copy()):
            return shift_indices(ctx.classify(images), q, cfg.guidance_weight, rng_for(cfg.seed, "shift", ctx.t),
                                 cfg.shift_exaggeration, correction)
        aux, cost = ctx.auxiliary_model(base, "aux_model" if round_ == 0 else f"aux_model_{round_}", select=select)
        denoiser = sims_denoiser(ctx, base, aux)
        total["train_images"] += cost["train_images"]
        total["seconds"] += cost["seconds"]
        if round_ == 0:  # the base's own draws are made once; later rounds resample the same ones
            total["sample_nfe"] += cost["sample_nfe"]
        if round_ == cfg.shift_calibration:
            break
        start = time.perf_counter()
        images, _ = ctx.draw(denoiser, cfg.n_aux, "calibration_sample", folder=f"calibration_{round_}_chunks")
        reached = np.bincount(ctx.classify(images), minlength=len(q))[:len(q)]
        distances.append(total_variation(reached, q))
        correction = correction * recalibrate(reached / reached.sum(), q, cfg.guidance_weight,
                                              cfg.shift_calibration_step)
        histograms.append(reached.tolist())
        total["sample_nfe"] += cfg.n_aux * cfg.sampling_steps * denoiser.networks_per_step
        total["seconds"] += time.perf_counter() - start
    info = {"calibration_target_tv": distances, "calibration_class_histograms": histograms} if distances else {}
    return SamplerSetup(denoiser, guided=True, info=info, **total)


def recalibrate(reached, target, guidance_weight: float, step: float = 1.0, floor: float = 1e-3) -> np.ndarray:
    """The factor a calibration round multiplies the auxiliary class mix by: (g / q)^(step/ω) for the
    guided samples' mix g (--shift-calibration-step). The guided mix is ∝ π_r^(1+ω) · π_s^(−ω), so under
    full adoption step 1 moves g to q in one round; a step of κ would assume the fine-tune adopts 1/κ."""
    g = np.maximum(np.asarray(reached, dtype=np.float64), floor)
    q = np.maximum(np.asarray(target, dtype=np.float64), floor)
    return (g / q) ** (step / max(guidance_weight, 1e-6))


def shift_mix(base_mix, target, guidance_weight: float, floor: float = 1e-3, exaggeration: float = 1.0,
              correction=None) -> np.ndarray:
    """The auxiliary class mix π_s that steers SIMS's guided samples to the class mix q.

    Guided sampling draws approximately from p_base^(1+ω) / p_aux^ω, so with the base's class mix π_r and
    an auxiliary model fine-tuned on samples of mix π_s the guided mix is ∝ π_r^(1+ω) · π_s^(−ω); it equals
    q for π_s ∝ π_r^((1+ω)/ω) · q^(−1/ω) = π_r · (π_r / q)^(1/ω). (A derivation from the guidance form; a
    finite fine-tune adopts π_s only in part, so the reached mix lies between the plain one and q.) The
    calibration κ (`exaggeration`, --shift-exaggeration) raises the correction: π_s ∝ π_r · (π_r / q)^(κ/ω),
    κ = 1 the derivation itself; `correction` multiplies it per class (the calibration rounds'
    `recalibrate` factors). Probabilities below `floor` are raised to it so that an empty class stays
    finite."""
    pi_r = np.maximum(np.asarray(base_mix, dtype=np.float64), floor)
    q = np.maximum(np.asarray(target, dtype=np.float64), floor)
    w = max(guidance_weight, 1e-6)
    mix = pi_r * (pi_r / q) ** (exaggeration / w) * (1.0 if correction is None else np.asarray(correction))
    return mix / mix.sum()


def shift_indices(classes: np.ndarray, target, guidance_weight: float, rng: np.random.Generator,
                  exaggeration: float = 1.0, correction=None) -> np.ndarray:
    """Indices into the base's samples (with replacement, as many as there are) whose class mix is
    `shift_mix` of theirs: the auxiliary model's training set for distribution shifting."""
    k = len(target)
    base_mix = np.bincount(classes, minlength=k)[:k] / len(classes)
    mix = shift_mix(base_mix, target, guidance_weight, exaggeration=exaggeration, correction=correction)
    counts = np.round(mix * len(classes)).astype(int)
    chosen = [rng.choice(np.flatnonzero(classes == c), n, replace=True)
              for c, n in enumerate(counts) if n and (classes == c).any()]
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(len(classes))


def neon_budget(cfg: RunConfig) -> dict:
    """Neon's own auxiliary fine-tune, by default in its paper's proportions (SinaAlemohammad/Neon,
    edm/run_cifar10.sh: 6k base samples for 50k real images, lr 1e-4 against EDM's 1e-3 with EDM's linear
    ramp of 10 Mimg over a 6 Mimg fine-tune; the paper reports about 1.75 % of the base's training images
    on CIFAR-10). The cpu preset's defaults: 120 samples, 11 steps of 64 (1.8 % of 600 x 64), lr 2e-4."""
    steps = cfg.neon_aux_train_steps or max(1, math.ceil(0.0175 * cfg.train_steps))
    return {"n_images": cfg.neon_n_aux or max(1, round(0.12 * cfg.n_real)), "train_steps": steps,
            "learning_rate": cfg.neon_learning_rate or cfg.learning_rate / 10,
            "warmup_steps": math.ceil(steps * 10 / 6)}


def neon(ctx: SamplerContext, base: UNet2DModel) -> SamplerSetup:
    """Neon (Alemohammad et al. 2025): fine-tune a copy of θ_t briefly on a few of its own samples at a
    reduced learning rate (`neon_budget`), then merge the weights θ = (1 + w)·θ_base − w·θ_aux and sample
    with that one network."""
    aux, cost = ctx.auxiliary_model(base, **neon_budget(ctx.cfg))
    merged = ctx.saved_model(ctx.run_dir.merged_model_dir(ctx.t), lambda: neon_merge(base, aux, ctx.cfg.neon_weight))
    return SamplerSetup(ctx.denoiser(merged), guided=True, **cost)


@torch.no_grad()
def neon_merge(base: UNet2DModel, aux: UNet2DModel, weight: float) -> UNet2DModel:
    """A new model with parameters (1 + w)·θ_base − w·θ_aux (buffers from the base), as in Neon's code."""
    merged = copy.deepcopy(base)
    aux_params = dict(aux.named_parameters())
    for name, param in merged.named_parameters():
        param.copy_((1 + weight) * param - weight * aux_params[name].to(param.device))
    return merged


AUXILIARY = ("n_aux", "aux_train_steps")
register_sampler("plain", direct, description="S_t drawn from θ_t (CFG when --sampling-bias < 1)")
register_sampler("sims", sims, uses=("guidance_weight", *AUXILIARY, "target_distribution", "shift_exaggeration",
                                     "shift_calibration", "shift_calibration_step"),
                 # ω also picks the auxiliary model's class mix when it shifts a distribution (shift_mix)
                 sampling_only=lambda cfg: () if cfg.target_distribution else ("guidance_weight",),
                 description="SIMS: (1+ω)·out_base − ω·out_aux, aux fine-tuned on own samples")
register_sampler("neon", neon, uses=("neon_weight", "neon_n_aux", "neon_aux_train_steps", "neon_learning_rate"),
                 sampling_only=("neon_weight",), description="Neon: one network with weights (1+w)·θ_base − w·θ_aux")

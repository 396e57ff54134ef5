"""How S_t is drawn from θ_t: a registry of samplers (plain, SIMS, Neon, and any plug-in's).

A sampler's `build(ctx, base)` gets the generation's context (`loops.orchestrator.Generation`:
the config, the run folder, `ctx.draw(...)`, `ctx.fine_tune(...)`) and the trained base model θ_t, and
returns a `SamplerSetup`: the denoiser S_t is drawn with, whether its samples are guided (then the
loop also draws plain samples from θ_t to score the model's own health), and the extra compute it
spent (auxiliary fine-tunes and auxiliary samples), for the cost columns of the metrics row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import UNet2DModel

from autophagy.config import ConfigError
from autophagy.sampling import GuidedDenoiser


@dataclass
class SamplerSetup:
    denoiser: GuidedDenoiser     # the network output S_t is drawn with
    guided: bool                 # not a plain draw from θ_t: the loop scores plain samples too (plain_*)
    train_images: int = 0        # images seen by the sampler's own training (auxiliary fine-tunes)
    sample_nfe: int = 0          # network evaluations x images of the sampler's own sampling (auxiliary draws)
    seconds: float = 0.0         # time of that extra work


@dataclass(frozen=True)
class Sampler:
    build: Callable[..., SamplerSetup]
    description: str = ""


SAMPLERS: dict[str, Sampler] = {}


def register_sampler(name: str, build: Callable[..., SamplerSetup], *, description: str = "") -> None:
    """Add a sampler under `name`; a name that is taken is refused."""
    if name in SAMPLERS:
        raise ConfigError(f"--plugin: sampler {name!r} is already registered; choose another name")
    SAMPLERS[name] = Sampler(build, description)


def plain(ctx, base: UNet2DModel) -> SamplerSetup:
    """S_t drawn from θ_t itself (with classifier-free guidance when the sampling bias λ < 1)."""
    denoiser = ctx.denoiser(base)
    return SamplerSetup(denoiser, guided=bool(denoiser.cfg_weight))


def sims(ctx, base: UNet2DModel) -> SamplerSetup:
    """SIMS: fine-tune a copy of θ_t on n_aux of its own samples (the auxiliary model), then sample with
    (1 + ω)·out_base − ω·out_aux at every step."""
    aux, work = ctx.auxiliary_model(base)
    denoiser = GuidedDenoiser(base, aux.to(ctx.device), ctx.cfg.guidance_weight, ctx.cfg_weight, ctx.cfg.channels_last)
    return SamplerSetup(denoiser, guided=True, **work)


def neon(ctx, base: UNet2DModel) -> SamplerSetup:
    """Neon (Alemohammad et al. 2025): the same auxiliary fine-tune, then merge the weights
    θ = (1 + w)·θ_base − w·θ_aux and sample with that one network."""
    aux, work = ctx.auxiliary_model(base)
    merged = ctx.saved_model(ctx.rd.merged_model_dir(ctx.t), lambda: neon_merge(base, aux, ctx.cfg.neon_weight))
    return SamplerSetup(ctx.denoiser(merged), guided=True, **work)


@torch.no_grad()
def neon_merge(base: UNet2DModel, aux: UNet2DModel, weight: float) -> UNet2DModel:
    """A new model with parameters (1 + w)·θ_base − w·θ_aux (buffers from the base), as in Neon's code."""
    import copy
    merged = copy.deepcopy(base)
    aux_params = dict(aux.named_parameters())
    for name, param in merged.named_parameters():
        param.copy_((1 + weight) * param - weight * aux_params[name].to(param.device))
    return merged


register_sampler("plain", plain, description="S_t drawn from θ_t (CFG when --sampling-bias < 1)")
register_sampler("sims", sims, description="SIMS: (1+ω)·out_base − ω·out_aux, aux fine-tuned on own samples")
register_sampler("neon", neon, description="Neon: one network with weights (1+w)·θ_base − w·θ_aux")

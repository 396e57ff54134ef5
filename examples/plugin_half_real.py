"""An example autophagy plug-in: a regime and a sampler of its own, registered like the built-ins.

    autophagy run --plugin examples/plugin_half_real.py --regime half-real --generations 5
    autophagy run --plugin examples/plugin_half_real.py --regime synthetic-augmentation --sampler low-temperature ...

`half-real`: D_t = half of R_0 ∪ S_{t-1} (a smaller real anchor than synthetic-augmentation).
`low-temperature`: plain DDIM from θ_t with the initial noise scaled by 0.9 (a common quality/diversity knob).
"""
import numpy as np

from autophagy.sampling import GuidedDenoiser
from loops.regimes import TrainingSet, register_regime
from loops.samplers import SamplerSetup, register_sampler


def half_real(t, draws):
    """build(t, draws) for t >= 1: the first half of R_0 plus every image of S_{t-1}."""
    r0 = draws.draw(0)
    return TrainingSet(real_indices=r0[: len(r0) // 2], synthetic_generations=(t - 1,))


class ScaledNoise(GuidedDenoiser):
    """Plain sampling whose first step sees the noise scaled by `scale` (ε-/v-prediction alike)."""
    scale = 0.9

    def __call__(self, x, t, labels=None):
        if int(t) == int(self.first_step):
            x = x * self.scale
        return super().__call__(x, t, labels)


def low_temperature(ctx, base):
    """build(ctx, base) -> SamplerSetup: ctx is the generation (ctx.cfg, ctx.draw, ctx.denoiser, ...)."""
    from autophagy.models import build_sample_scheduler
    denoiser = ScaledNoise(base.to(ctx.device), channels_last=ctx.cfg.channels_last)
    denoiser.first_step = build_sample_scheduler(ctx.cfg).timesteps[0]
    return SamplerSetup(denoiser, guided=True)  # guided: the loop also scores plain samples of θ_t


register_regime("half-real", half_real, description="D_t = half of R_0 ∪ S_{t-1} (example plug-in)")
register_sampler("low-temperature", low_temperature, description="initial noise x 0.9 (example plug-in)")

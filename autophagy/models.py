"""The diffusion model and its noise schedules, sized by the config (diffusers components)."""
from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel, UniPCMultistepScheduler

from autophagy.config import RunConfig

TRAIN_TIMESTEPS = 1000


def build_unet(cfg: RunConfig, channels: int, num_classes: int = 0) -> UNet2DModel:
    """A UNet2DModel for `channels`-channel images; class-conditional (one extra null class, so that
    classifier-free guidance can drop the label) when the config conditions on the class (`class_conditional`)."""
    levels = len(cfg.block_out_channels)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if cfg.attention:  # attention at the lowest resolution only, as in DDPM
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=cfg.resolution,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=cfg.layers_per_block,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=min(8, min(cfg.block_out_channels)),
        mid_block_type=None if cfg.mid_block == "none" else "UNetMidBlock2D",
        add_attention=cfg.mid_block == "attention",
        num_class_embeds=(num_classes + 1) if cfg.class_conditional(num_classes) else None,
    )


def build_train_scheduler(cfg: RunConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, prediction_type=cfg.prediction_type,
                         beta_schedule=cfg.beta_schedule)


# The samplers S_t can be drawn with, each diffusers' own scheduler built from the training schedule.
# DPM-Solver++ (2nd order multistep) and UniPC reach at 10-15 network evaluations what DDIM needs 25-50 for.
SAMPLE_SCHEDULERS = {
    "ddim": DDIMScheduler,
    "dpmsolver": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}


def build_sample_scheduler(cfg: RunConfig):
    """A fresh sampling scheduler (multistep solvers keep state: one per batch), with `sampling_steps` steps."""
    scheduler = SAMPLE_SCHEDULERS[cfg.sampling_scheduler].from_config(
        build_train_scheduler(cfg).config, timestep_spacing=cfg.timestep_spacing)
    scheduler.set_timesteps(cfg.sampling_steps)
    return scheduler


def scheduler_step(scheduler, out, t, x):
    """One denoising step; DDIM deterministically (η = 0)."""
    extra = {"eta": 0.0} if isinstance(scheduler, DDIMScheduler) else {}
    return scheduler.step(out, t, x, **extra).prev_sample


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())

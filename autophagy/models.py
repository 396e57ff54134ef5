"""The diffusion model and its noise schedules, sized by the config (diffusers components)."""
from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from autophagy.config import RunConfig

TRAIN_TIMESTEPS = 1000


def build_unet(cfg: RunConfig, channels: int, num_classes: int = 0) -> UNet2DModel:
    """A UNet2DModel for `channels`-channel images; class-conditional (one extra null class) when
    sampling bias is on, so classifier-free guidance can drop the label."""
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
        num_class_embeds=(num_classes + 1) if cfg.class_conditional else None,
    )


def build_train_scheduler(cfg: RunConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, prediction_type=cfg.prediction_type)


def build_sample_scheduler(cfg: RunConfig) -> DDIMScheduler:
    scheduler = DDIMScheduler.from_config(build_train_scheduler(cfg).config)
    scheduler.set_timesteps(cfg.ddim_steps)
    return scheduler


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())

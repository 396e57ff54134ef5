"""Draw images (DDIM, DPM-Solver++ or UniPC, diffusers' schedulers): plain, with classifier-free guidance (MAD's sampling bias λ), and with the
SIMS extrapolation from an auxiliary model.

Both guidances extrapolate the network output in whatever parametrisation it predicts (ε, v and the
score are affine in each other at fixed x_t and t, so the formula is the same):

    classifier-free (MAD):  out = (1 + w) · out(x | c) − w · out(x | ∅)      w = 1/λ − 1
    SIMS:                   out = (1 + ω) · out_base(x) − ω · out_aux(x)

Each chunk's noise and labels derive from (seed, generation, role, chunk), so a chunk can be redrawn
bit for bit after an interruption, and chunks can be spread over processes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import UNet2DModel

from autophagy import threads
from autophagy.config import RunConfig
from autophagy.models import build_sample_scheduler, scheduler_step
from autophagy.seeding import torch_generator


@dataclass
class GuidedDenoiser:
    """The network output used at every DDIM step: base, optionally CFG and SIMS-guided."""
    base: UNet2DModel
    aux: UNet2DModel | None = None   # SIMS auxiliary model (fine-tuned on the base's own samples)
    guidance_weight: float = 0.0     # SIMS ω
    class_guidance_weight: float = 0.0          # classifier-free guidance w = 1/λ − 1
    channels_last: bool = False

    @property
    def networks_per_step(self) -> int:
        """Network evaluations per image and sampling step (for the compute accounting)."""
        return (2 if self.class_guidance_weight else 1) * (2 if self.aux is not None and self.guidance_weight else 1)

    # Each network output is cast to float32 before a guidance combination, so under bf16 autocast a small
    # difference between the two outputs is never rounded to bf16's 8 bits of mantissa.
    def _net(self, model: UNet2DModel, x: torch.Tensor, t, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None or self.class_guidance_weight == 0:
            return model(x, t, class_labels=labels).sample.float()
        null = torch.full_like(labels, model.config.num_class_embeds - 1)
        cond, uncond = model(torch.cat([x, x]), t, class_labels=torch.cat([labels, null])).sample.float().chunk(2)
        return combine(cond, uncond, self.class_guidance_weight)

    def __call__(self, x: torch.Tensor, t, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self._net(self.base, x, t, labels)
        if self.aux is None or self.guidance_weight == 0:
            return out
        return combine(out, self._net(self.aux, x, t, labels), self.guidance_weight)


def combine(positive: torch.Tensor, negative: torch.Tensor, weight: float) -> torch.Tensor:
    """(1 + w)·positive − w·negative, computed in float32 even inside a bf16 autocast region."""
    with torch.autocast(positive.device.type, enabled=False):
        return (1 + weight) * positive.float() - weight * negative.float()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


@threads.engine_claim()
@torch.inference_mode()
def sample_batch(denoiser: GuidedDenoiser, cfg: RunConfig, n_images: int, generator: torch.Generator,
                num_classes: int = 0, device="cpu", autocast=None) -> tuple[np.ndarray, np.ndarray | None]:
    """One batch of `n_images` from pure noise with `cfg.sampling_steps` steps of the sampling scheduler."""
    base = denoiser.base
    shape = (n_images, base.config.in_channels, base.config.sample_size, base.config.sample_size)
    x = torch.randn(shape, generator=generator).to(device)
    labels = None
    if base.config.num_class_embeds:
        labels = torch.randint(0, num_classes, (n_images,), generator=generator).to(device)  # classes drawn uniformly
    scheduler = build_sample_scheduler(cfg)
    for t in scheduler.timesteps:
        if autocast is not None:
            with autocast():
                out = denoiser(x, t, labels)
        else:
            out = denoiser(x, t, labels)
        x = scheduler_step(scheduler, out.float(), t, x)
    return to_uint8(x), (labels.cpu().numpy() if labels is not None else None)


def chunk_sizes(n_images: int, chunk: int) -> list[int]:
    return [min(chunk, n_images - start) for start in range(0, n_images, chunk)]


def sample_chunks(denoiser: GuidedDenoiser, cfg: RunConfig, n_images: int, seed_ints: tuple[int, ...],
                  purpose: str = "sample", num_classes: int = 0, device="cpu", chunks=None, autocast=None):
    """Yield (chunk_index, images uint8, labels) for the chunks asked for (all by default)."""
    sizes = chunk_sizes(n_images, cfg.sample_batch_size)
    for index in (range(len(sizes)) if chunks is None else chunks):
        threads.rebalance()
        generator = torch_generator(seed_ints[0], purpose, *seed_ints[1:], index)
        images, labels = sample_batch(denoiser, cfg, sizes[index], generator, num_classes, device, autocast)
        yield index, images, labels

"""The cost of one generation of a preset on this machine, measured on a few steps and extrapolated.

    python benchmarks/bench_preset.py --preset mnist-full [--steps 20] [--samples 200] [--mixed-precision bf16]

Times `--steps` optimizer steps of the preset's trainer on R_0 and plain sampling of `--samples` images
with its sampling scheduler (training and sampling precision as a run on this machine resolves them: `auto`
by the capability probe), then prints seconds per step, images per second, and a generation's cost:
train_steps x s/step + (n_synthetic [+ n_aux + n_reference for SIMS]) / img/s. Also the lenet of the
preset's data (trained once and cached: its held-out accuracy and the time it took). For presets whose
generation takes hours here (mnist-full, cifar10), the figure to plan a GPU run by, not a measured run.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from autophagy import hardware
from autophagy.config import MIXED_PRECISION, make_config
from autophagy.data import load_real_data
from autophagy.features import train_lenet
from autophagy.models import build_unet
from autophagy.sampling import GuidedDenoiser, sample_chunks
from autophagy.training import train_diffusion
from loops.regimes import RealDraws


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="mnist-full")
    p.add_argument("--steps", type=int, default=20, help="training steps timed")
    p.add_argument("--samples", type=int, default=200, help="images sampled for the timing")
    p.add_argument("--mixed-precision", choices=MIXED_PRECISION, help="instead of the preset's")
    args = p.parse_args()
    cfg = make_config(args.preset, mixed_precision=args.mixed_precision)
    precision = hardware.resolve_mixed_precision(cfg.mixed_precision, "cpu")
    sampling_dtype = "bfloat16" if precision == "bf16" else hardware.resolve_sampling_dtype(cfg.sampling_dtype, "cpu")
    print(f"machine: {hardware.describe()}; preset {args.preset}; training precision {precision} "
          f"(mixed_precision {cfg.mixed_precision}), sampling {sampling_dtype}", flush=True)
    start = time.perf_counter()
    real = load_real_data(cfg.data, cfg.resolution, cfg.n_reference, cfg.n_validation)
    print(f"data     {len(real.images)} images {real.images.shape[1:]}, pool {len(real.pool)}: "
          f"{time.perf_counter() - start:.1f}s (cached after the first load)", flush=True)
    start = time.perf_counter()
    lenet = train_lenet(real)
    print(f"lenet    held-out accuracy {lenet.quality:.4f}, {time.perf_counter() - start:.1f}s "
          f"(cached after the first training)", flush=True)
    r0 = RealDraws(real.pool, cfg).draw(0)
    torch.manual_seed(0)
    model = build_unet(cfg, real.channels, real.num_classes)  # class-conditional where the preset says so
    num_classes = real.num_classes if model.config.num_class_embeds else 0
    images, labels = real.images[r0], (real.labels[r0] if num_classes else None)
    train_diffusion(model, images, labels, cfg, 3, (0, 0, 0), None, "warm-up")   # first steps allocate
    start = time.perf_counter()
    train_diffusion(model, images, labels, cfg, args.steps, (0, 0, 1), None, "bench")
    per_step = (time.perf_counter() - start) / args.steps
    model.eval()
    one_chunk = make_config(args.preset, sample_batch_size=args.samples)
    start = time.perf_counter()
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if sampling_dtype == "bfloat16" else None
    list(sample_chunks(GuidedDenoiser(model), one_chunk, args.samples, (0, 0, 0), num_classes=num_classes,
                       autocast=autocast))
    per_image = (time.perf_counter() - start) / args.samples
    train = cfg.train_steps * per_step
    plain = cfg.n_synthetic * per_image
    sims = plain * 2 + (cfg.n_aux + cfg.n_reference) * per_image + cfg.aux_train_steps * per_step
    print(f"training {per_step:.3f} s/step at batch {cfg.batch_size} -> {cfg.train_steps} steps {train / 60:.1f} min")
    print(f"sampling {1 / per_image:.1f} img/s ({cfg.sampling_scheduler} {cfg.sampling_steps} steps) -> "
          f"{cfg.n_synthetic} images {plain / 60:.1f} min")
    print(f"one generation: plain sampler {(train + plain) / 60:.1f} min, SIMS {(train + sims) / 60:.1f} min "
          f"(extrapolated from {args.steps} steps and {args.samples} images)")
    import resource
    print(f"parameters {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

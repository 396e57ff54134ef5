"""What one `cifar10` generation costs: FLOPs always, and on a GPU measured images/s at bf16 and fp32.

    python benchmarks/bench_cifar10.py                      # on a GPU machine: times bf16 and fp32
    python benchmarks/bench_cifar10.py --time-on-cpu --steps 2 --samples 4 --batch-size 4 --sampling-steps 2  # smoke
    python benchmarks/bench_cifar10.py --train-only --batch-sizes 128,256 --compile   # training throughput variants

Counts the FLOPs of one forward pass of the preset's UNet2DModel (torch's FlopCounterMode), then
times autophagy's own trainer (accelerate, EMA) and DDIM sampler on random images of the preset's
shape for each precision, and extrapolates one generation of each sampler from the preset's sizes:
train_steps x batch training images, n_synthetic samples, and for SIMS n_aux more samples,
aux_train_steps of fine-tuning and two networks per sampling step. Inception feature extraction
(clean-fid) is not included.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from accelerate.state import AcceleratorState
from torch.utils.flop_counter import FlopCounterMode

from autophagy import hardware
from autophagy import config as autophagy_config
from autophagy.config import make_config
from autophagy.models import build_unet, parameter_count
from autophagy.sampling import GuidedDenoiser, sample_chunks
from autophagy.training import train_diffusion

# gpu_check.sh also times a trainer from before compile_mode (its baseline, eager): it knows torch's default alone
COMPILE_MODES = getattr(autophagy_config, "COMPILE_MODES", ("default",))


def forward_flops(model, cfg) -> int:
    """FLOPs of one image through the network (multiply-add = 2 FLOPs)."""
    x = torch.zeros(1, 3, cfg.resolution, cfg.resolution)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, torch.tensor([500]))
    return counter.get_total_flops()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_images_per_s(cfg, steps: int, device: str, skip: int = 5) -> float:
    """Images per second of steps skip+1 .. skip+steps of one training call: the setup, the first kernels,
    the allocator's growth and (under --compile) the compilation fall into the skipped steps."""
    AcceleratorState._reset_state(True)  # accelerate fixes the precision once per process
    images = np.random.default_rng(0).integers(0, 256, (max(cfg.batch_size * 4, 64), 3, cfg.resolution, cfg.resolution),
                                               dtype=np.uint8)
    stamps = {}

    def on_step(done, _ema):
        if done in (skip, skip + steps):
            sync(device)
            stamps[done] = time.perf_counter()

    train_diffusion(build_unet(cfg, 3), images, None, cfg, skip + steps, (0, 0, 0), None,
                    f"train {cfg.mixed_precision}", on_step=on_step)
    return steps * cfg.batch_size / (stamps[skip + steps] - stamps[skip])


def train_only(cfg, args, device: str) -> None:
    """Training throughput of the preset at each batch size, eager, or compiled under --compile."""
    mode = args.compile_mode if args.compile else "eager"
    print(f"{'batch':>6} {'compile':>26} {'precision':>9} {'train img/s':>12} {'steps/s':>8}")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        v = dataclasses.replace(cfg, batch_size=batch, compile=args.compile,
                                **({"compile_mode": args.compile_mode} if args.compile else {}))
        try:
            rate = train_images_per_s(v, args.steps, device)
        except Exception as exc:  # noqa: BLE001 — one batch failing (out of memory) must not hide the others' figures
            print(f"{batch:>6} {mode:>26} {v.mixed_precision:>9} failed: {type(exc).__name__}: {exc}"[:300])
            continue
        print(f"{batch:>6} {mode:>26} {v.mixed_precision:>9} {rate:12.1f} {rate / batch:8.2f}", flush=True)


def sample_images_per_s(cfg, n_images: int, device: str, guided: bool) -> float:
    base = build_unet(cfg, 3).to(device).eval()
    aux = build_unet(cfg, 3).to(device).eval() if guided else None
    # as the run samples: weights as training leaves them, the denoiser makes its input channels_last
    denoiser = GuidedDenoiser(base, aux, cfg.guidance_weight if guided else 0.0, channels_last=cfg.channels_last)
    autocast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if cfg.mixed_precision == "bf16" else None
    one_chunk = dataclasses.replace(cfg, sample_batch_size=n_images)
    list(sample_chunks(denoiser, dataclasses.replace(one_chunk, sampling_steps=2), n_images, (0, 0, 0), device=device,
                       autocast=autocast))  # warm-up
    sync(device)
    start = time.perf_counter()
    list(sample_chunks(denoiser, one_chunk, n_images, (0, 0, 0), device=device, autocast=autocast))
    sync(device)
    return n_images / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time-on-cpu", action="store_true", help="without a GPU, time on the CPU anyway (smoke run)")
    p.add_argument("--steps", type=int, default=50, help="training steps per timing")
    p.add_argument("--samples", type=int, default=1000, help="images per sampling timing (with the preset's DDIM steps)")
    p.add_argument("--batch-size", type=int, help="override the preset's training batch")
    p.add_argument("--sampling-steps", type=int, help="override the preset's DDIM steps")
    p.add_argument("--channels-last", choices=("preset", "on", "off"), default="preset",
                   help="memory format of training and of the sampler's input (preset: on)")
    p.add_argument("--train-only", action="store_true", help="time training alone, at each of --batch-sizes")
    p.add_argument("--batch-sizes", default="128", help="with --train-only: comma-separated training batches")
    p.add_argument("--compile", action="store_true", help="with --train-only: time the compiled model (torch.compile through accelerate) instead of eager")
    p.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                   help="with --compile: torch.compile's mode (reduce-overhead: CUDA graphs)")
    args = p.parse_args()
    overrides = {"batch_size": args.batch_size, "sampling_steps": args.sampling_steps}
    cfg = make_config("cifar10", **{k: v for k, v in overrides.items() if v})
    if args.channels_last != "preset":
        cfg = dataclasses.replace(cfg, channels_last=args.channels_last == "on")
    model = build_unet(cfg, 3)
    flops = forward_flops(model, cfg)
    train_images = cfg.train_steps * cfg.batch_size
    sims_train_images = train_images + cfg.aux_train_steps * cfg.batch_size
    plain_evals = cfg.n_synthetic * cfg.sampling_steps
    sims_evals = (cfg.n_aux + 2 * cfg.n_synthetic) * cfg.sampling_steps
    print(f"cifar10 preset: UNet2DModel {parameter_count(model) / 1e6:.1f} M parameters, {flops / 1e9:.2f} GFLOP per "
          f"image forward at {cfg.resolution}x{cfg.resolution}, batch {cfg.batch_size}, {cfg.train_steps} steps, "
          f"{cfg.n_synthetic} samples x {cfg.sampling_steps} DDIM steps")
    print(f"one generation, plain sampler: {3 * flops * train_images / 1e15:.1f} PFLOP training (3 x forward) + "
          f"{flops * plain_evals / 1e15:.2f} PFLOP sampling")
    print(f"one generation, SIMS sampler:  {3 * flops * sims_train_images / 1e15:.1f} PFLOP training incl. aux + "
          f"{flops * sims_evals / 1e15:.2f} PFLOP sampling (aux samples + two networks per step)")
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where accelerate will train
    if device == "cpu" and not args.time_on_cpu:
        print("no GPU here: timings skipped (--time-on-cpu to time on the CPU anyway)")
        return
    if cfg.mixed_precision == "auto":   # the preset's choice since 2026-12-06: resolved as a run on this device would
        cfg = dataclasses.replace(cfg, mixed_precision=hardware.resolve_mixed_precision("auto", device))
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"\ndevice {name}; {hardware.describe()}; channels_last {cfg.channels_last}")
    if args.train_only:
        train_only(cfg, args, device)
        return
    print(f"{'precision':>9} {'train img/s':>12} {'sample img/s':>13} {'SIMS img/s':>11} "
          f"{'plain gen h':>12} {'SIMS gen h':>11}")
    for precision in ("bf16", "no"):
        v = dataclasses.replace(cfg, mixed_precision=precision)
        train = train_images_per_s(v, args.steps, device)
        plain = sample_images_per_s(v, args.samples, device, guided=False)
        guided = sample_images_per_s(v, args.samples, device, guided=True)
        plain_hours = (train_images / train + cfg.n_synthetic / plain) / 3600
        sims_hours = (sims_train_images / train + cfg.n_aux / plain + cfg.n_synthetic / guided) / 3600
        print(f"{'fp32' if precision == 'no' else precision:>9} {train:12.1f} {plain:13.1f} {guided:11.1f} "
              f"{plain_hours:12.2f} {sims_hours:11.2f}")


if __name__ == "__main__":
    main()

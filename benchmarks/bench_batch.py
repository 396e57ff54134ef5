"""Seconds per training step by batch size (and torch's fused AdamW on the CPU): what a step of the cpu
preset's class-conditional UNet costs, to put `frontier.py`'s FID-per-step rows on a CPU-seconds scale.

    python benchmarks/bench_batch.py [--threads 2] [--batches 64,128,256] [--repeats 3] [--steps 100]
    python benchmarks/bench_batch.py --variants "" "block_out_channels=16/32/32" --fused no   # a UNet shape's cost

The loop's own trainer on random 16x16 images (the cost does not depend on the pixels); the variants are
interleaved and repeated, and the median is printed. Nothing else should run on the machine meanwhile.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

import autophagy.training as training
from autophagy import hardware
from autophagy.config import PRESETS, RunConfig
from autophagy.models import build_unet
from frontier import parse_variant


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="64,128,256")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=100, help="timed steps per variant and repeat (after 20 warm-up)")
    p.add_argument("--variants", nargs="+", default=[""], help="FIELD=VALUE,... overrides of the cpu preset, as "
                   "frontier.py's (each timed at every batch size)")
    p.add_argument("--fused", choices=("both", "no", "yes"), default="both", help="time torch's fused AdamW, "
                   "the per-tensor loop, or both")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(hardware.describe(), flush=True)
    cfg = RunConfig(**{**PRESETS["cpu"], "conditioning": "class", "checkpoint_every": 0})
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5000, 1, cfg.resolution, cfg.resolution), dtype=np.uint8)
    labels = rng.integers(0, 10, 5000)
    adamw = torch.optim.AdamW

    def ms_per_step(text: str, batch: int, fused: bool, steps: int) -> float:
        # the trainer builds torch.optim.AdamW itself: swap in the fused variant for this call only
        training.torch.optim.AdamW = (lambda *a, **k: adamw(*a, **{**k, "fused": True})) if fused else adamw
        try:
            variant = replace(cfg, batch_size=batch, **parse_variant(text))
            model = build_unet(variant, 1, 10)
            start = time.perf_counter()
            training.train_diffusion(model, images, labels, variant, steps, (0, 0, 0))
            return (time.perf_counter() - start) / steps * 1000
        finally:
            training.torch.optim.AdamW = adamw

    fused_choices = {"both": (False, True), "no": (False,), "yes": (True,)}[args.fused]
    variants = [(text, b, fused) for text in args.variants for b in map(int, args.batches.split(","))
                for fused in fused_choices]
    ms_per_step(*variants[0][:3], 20)
    times = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            times[v].append(ms_per_step(*v, args.steps))
    base = np.median(times[variants[0]])
    for (text, batch, fused), values in times.items():
        median = float(np.median(values))
        print(f"{text or 'cpu preset':40s} batch {batch:4d} {'fused AdamW' if fused else 'AdamW      '}: "
              f"{median:6.1f} ms/step (runs {', '.join(f'{x:.1f}' for x in values)}), {median / base:.2f}x the first")


if __name__ == "__main__":
    main()

"""Engine overhead, measured side by side in one process: every figure is a ratio against its baseline.

    python benchmarks/bench_engine.py [--preset cpu] [--steps 60] [--variants]

- training: autophagy's trainer (accelerate, EMA, checkpoint logic, progress) vs a bare PyTorch loop
  on the same UNet2DModel, batch and optimizer (target >= 0.95x);
- sampling: autophagy's plain sampler with DDIM vs diffusers' DDIMPipeline on the same model and steps
  (target >= 0.95x), SIMS-guided vs plain (target <= 2.05x);
- metrics: 2,000 vs 2,000 in 2048-d and in the lenet space, with and without the cached reference;
- --variants: bf16 autocast, channels_last and one torch thread instead of the default on this machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.state import AcceleratorState
from diffusers import DDIMPipeline

from autophagy.config import make_config
from autophagy import hardware
from autophagy.data import load_real_data
from autophagy.features import train_lenet
from autophagy.metrics import compute_metrics, gaussian_stats, knn_radii
from autophagy.models import build_sample_scheduler, build_train_scheduler, build_unet
from autophagy.sampling import GuidedDenoiser, sample_chunks
from autophagy.training import images_to_tensor, loss_weights, train_diffusion
from loops.regimes import RealDraws


def bare_training(cfg, images: np.ndarray, steps: int) -> float:
    """The baseline: plain PyTorch, no accelerate, EMA or logging, the same loss (min-SNR-γ weights
    where the preset uses them, from diffusers' compute_snr). Returns seconds."""
    torch.manual_seed(0)
    model = build_unet(cfg, images.shape[1])
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    scheduler = build_train_scheduler(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0,
                                  fused=cfg.fused_adamw == "always")
    data = images_to_tensor(images, "cpu")
    g = torch.Generator().manual_seed(0)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(data), (cfg.batch_size,), generator=g)
        x0, noise = data[idx], torch.randn(cfg.batch_size, *data.shape[1:], generator=g)
        t = torch.randint(0, 1000, (cfg.batch_size,), generator=g)
        x_t = scheduler.add_noise(x0, noise, t)
        target = scheduler.get_velocity(x0, noise, t) if cfg.prediction_type == "v_prediction" else noise
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16"):
            pred = model(x_t, t).sample
        weights = loss_weights(scheduler, t, cfg)
        if weights is None:
            loss = F.mse_loss(pred.float(), target)
        else:
            loss = (F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3)) * weights).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def ours_training(cfg, images: np.ndarray, steps: int) -> float:
    torch.manual_seed(0)
    model = build_unet(cfg, images.shape[1])
    start = time.perf_counter()
    train_diffusion(model, images, None, cfg, steps, (0, 0, 0), None, "bench")
    return time.perf_counter() - start


def best_of(fn, repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def paired(fn_a, fn_b, repeats: int) -> tuple[float, float, float]:
    """Time both `repeats` times, alternating which goes first (A B, B A, ...) so that drift of the
    machine hits both alike. Returns best of A, best of B and the median over pairs of A/B: on a
    shared VM single timings vary by 10-20 %, and the median of paired ratios is the steadier figure."""
    a, b = [], []
    for i in range(repeats):
        if i % 2:
            b.append(fn_b())
            a.append(fn_a())
        else:
            a.append(fn_a())
            b.append(fn_b())
    return min(a), min(b), float(np.median(np.array(a) / np.array(b)))


def bench_training(cfg, images, steps, repeats):
    bare, ours, median = paired(lambda: bare_training(cfg, images, steps), lambda: ours_training(cfg, images, steps),
                                repeats)
    print(f"training   bare {steps * cfg.batch_size / bare:8.0f} img/s | autophagy {steps * cfg.batch_size / ours:8.0f} img/s"
          f" | ratio best-of {bare / ours:.3f}, median of pairs {median:.3f} (target >= 0.95)")
    return steps * cfg.batch_size / ours


def bench_sampling(cfg, n_images, repeats):
    torch.manual_seed(0)
    base = build_unet(cfg, 1).eval()
    aux = build_unet(cfg, 1).eval()
    one_chunk = dataclasses.replace(cfg, sample_batch_size=n_images)
    # DDIMPipeline always converts its scheduler to DDIM: the pipeline comparison runs autophagy with DDIM too
    ddim_chunk = dataclasses.replace(one_chunk, sampling_scheduler="ddim")
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if cfg.mixed_precision == "bf16" else None
    pipe = DDIMPipeline(unet=base, scheduler=build_sample_scheduler(cfg))
    pipe.set_progress_bar_config(disable=True)

    def pipeline():
        start = time.perf_counter()
        pipe(batch_size=n_images, num_inference_steps=cfg.sampling_steps, output_type="np", generator=torch.Generator().manual_seed(0))
        return time.perf_counter() - start

    def ours(denoiser, chunk=one_chunk):
        def run():
            start = time.perf_counter()
            list(sample_chunks(denoiser, chunk, n_images, (0, 0, 0), autocast=autocast))
            return time.perf_counter() - start
        return run
    t_pipe, t_ddim, pipe_ratio = paired(pipeline, ours(GuidedDenoiser(base, channels_last=cfg.channels_last), ddim_chunk), repeats)
    t_sims, t_plain2, sims_ratio = paired(ours(GuidedDenoiser(base, aux, 1.0, channels_last=cfg.channels_last)),
                                          ours(GuidedDenoiser(base, channels_last=cfg.channels_last)), repeats)
    t_plain = t_plain2
    print(f"sampling   DDIMPipeline {n_images / t_pipe:8.0f} img/s | autophagy plain DDIM {n_images / t_ddim:8.0f} img/s"
          f" | ratio best-of {t_pipe / t_ddim:.3f}, median of pairs {pipe_ratio:.3f} (target >= 0.95)")
    print(f"sampling   autophagy plain {cfg.sampling_scheduler} {cfg.sampling_steps} steps {n_images / t_plain:8.0f} img/s")
    print(f"sampling   SIMS-guided {n_images / t_sims:8.0f} img/s | SIMS/plain time best-of {t_sims / t_plain:.3f}, "
          f"median of pairs {sims_ratio:.3f} (target <= 2.05)")
    return n_images / t_plain


def bench_metrics(cfg, real, n=2000):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, 2048)), rng.normal(size=(n, 2048)) + 0.1
    start = time.perf_counter(); compute_metrics(a, b, k=3); t_full = time.perf_counter() - start
    stats, radii = gaussian_stats(a), knn_radii(torch.from_numpy(a), 3)
    start = time.perf_counter(); compute_metrics(a, b, 3, stats, radii); t_cached = time.perf_counter() - start
    print(f"metrics    2048-d {n} vs {n}: {t_full:.2f}s | cached reference {t_cached:.2f}s | speed-up {t_full / t_cached:.2f}x")
    lenet = train_lenet(real)
    ref_images, fake_images = real.images[real.reference], real.images[real.pool[:n]]
    start = time.perf_counter()
    ref = lenet(ref_images)
    compute_metrics(ref, lenet(fake_images), k=3)
    t_full = time.perf_counter() - start
    stats, radii = gaussian_stats(ref), knn_radii(torch.from_numpy(ref), 3)
    start = time.perf_counter()
    compute_metrics(ref, lenet(fake_images), 3, stats, radii)
    lenet.classify(fake_images)
    t_cached = time.perf_counter() - start
    print(f"metrics    lenet {len(ref_images)} ref vs {n}: {t_full:.2f}s with features | cached reference {t_cached:.2f}s"
          f" (incl. class histogram) | speed-up {t_full / t_cached:.2f}x")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=60, help="training steps per timing")
    p.add_argument("--samples", type=int, default=500, help="images per sampling timing")
    p.add_argument("--repeats", type=int, default=5, help="best of this many timings")
    p.add_argument("--variants", action="store_true", help="also time bf16 autocast, channels_last and one thread")
    args = p.parse_args()
    cfg = make_config(args.preset)
    print(f"machine: {hardware.describe()}; preset {args.preset}")
    real = load_real_data(cfg.data, cfg.resolution, cfg.n_reference, cfg.n_validation)
    images = real.images[RealDraws(real.pool, cfg).draw(0)]  # R_0, as the loop draws it
    bench_training(cfg, images, args.steps, args.repeats)
    bench_sampling(cfg, args.samples, args.repeats)
    bench_metrics(cfg, real)
    if args.variants:
        for name, variant in [("bf16", dict(mixed_precision="bf16")), ("channels_last", dict(channels_last=True))]:
            print(f"-- variant {name}")
            v = dataclasses.replace(cfg, **variant)
            AcceleratorState._reset_state(True)  # accelerate fixes the precision once per process
            bench_training(v, images, args.steps, args.repeats)
            bench_sampling(v, args.samples, args.repeats)
        threads = torch.get_num_threads()
        print(f"-- variant 1 thread (default {threads})")
        torch.set_num_threads(1)
        bench_training(cfg, images, args.steps, args.repeats)
        bench_sampling(cfg, args.samples, args.repeats)
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()

"""Pick the SIMS defaults on a preset: score generation 0's guided samples over ω, n_aux, aux_train_steps.

    python benchmarks/sweep_sims.py [--preset cpu] [--seed 0]

Trains one base model on R_0, then for each (n_aux, aux_train_steps) fine-tunes an auxiliary model
on the base's own samples and draws n_synthetic images for each ω; prints lenet-space metrics.
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from autophagy.config import make_config
from autophagy.data import load_real_data
from autophagy.features import train_lenet
from autophagy.metrics import class_statistics, compute_metrics
from autophagy.models import build_unet
from autophagy.sampling import GuidedDenoiser, sample_chunks
from autophagy.training import train_diffusion
from loops.regimes import RealDraws


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--omegas", default="0,0.5,1,2")
    p.add_argument("--aux", default="1000:50,1000:100,1000:200,500:100", help="n_aux:aux_train_steps pairs")
    args = p.parse_args()
    cfg = make_config(args.preset, seed=args.seed)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if cfg.sampling_dtype == "bfloat16" else None
    real = load_real_data(cfg.data, cfg.resolution, cfg.n_reference, cfg.seed)
    lenet = train_lenet(real, cfg.seed)
    ref = lenet(real.images[real.reference])
    images = real.images[RealDraws(real.pool, cfg).draw(0)]  # R_0, as the loop draws it
    torch.manual_seed(cfg.seed)
    base = train_diffusion(build_unet(cfg, real.channels), images, None, cfg, cfg.train_steps, (cfg.seed, 0, 0))

    def draw(denoiser, n, role):
        return np.concatenate([c[1] for c in sample_chunks(denoiser, cfg, n, (cfg.seed, 0, role), autocast=autocast)])

    def report(name, samples):
        m = compute_metrics(ref, lenet(samples), cfg.k)
        c = class_statistics(lenet.classify(samples), real.num_classes)
        print(f"{name:32s} fid {m['fid']:7.1f}  precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
              f"density {m['density']:.3f}  coverage {m['coverage']:.3f}  classes {c['classes_covered']}  "
              f"entropy {c['class_entropy']:.3f}", flush=True)

    report("plain (ω = 0)", draw(GuidedDenoiser(base), cfg.n_synthetic, 0))
    for pair in args.aux.split(","):
        n_aux, steps = map(int, pair.split(":"))
        start = time.perf_counter()
        aux_images = draw(GuidedDenoiser(base), n_aux, 1)
        aux = train_diffusion(copy.deepcopy(base), aux_images, None, cfg, steps, (cfg.seed, 0, 1))
        seconds = time.perf_counter() - start
        for omega in [float(w) for w in args.omegas.split(",") if float(w) > 0]:
            report(f"n_aux {n_aux} steps {steps} ω {omega} ({seconds:.0f}s)",
                   draw(GuidedDenoiser(base, aux, omega), cfg.n_synthetic, 0))


if __name__ == "__main__":
    main()

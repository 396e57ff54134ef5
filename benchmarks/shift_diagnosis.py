"""Why SIMS's distribution shifting falls short here: adoption or conversion?

Guided sampling is taken to draw from p_base^(1+ω) / p_aux^ω, so the class mix it reaches depends on two
steps: how far the auxiliary fine-tune *adopts* the class mix π_s it is trained on (the auxiliary model's
own unguided mix π_a), and how far guidance *converts* π_a into the guided mix g (the derivation predicts
g ∝ π_r^(1+ω) π_a^(−ω), with π_r the base's own mix). This script measures π_r, π_a and g for one θ_0 and
one target, for auxiliary fine-tunes of several lengths and several ω at sampling, and prints the total
variation of each to the target next to the derivation's prediction from the measured π_a.

Class mixes only (the lenet of the real pool); no FID, so the reference set is never read.

    python benchmarks/shift_diagnosis.py RUN_FOLDER [--target q0,...,q9] [--aux-steps 100,1000] [--omegas 2,4,8]

RUN_FOLDER: a finished run on the unconditional base (its gen_000/model is θ_0, its config.json the preset).
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np

from autophagy import threads
from autophagy.config import RunConfig
from autophagy.features import train_lenet
from autophagy.sampling import GuidedDenoiser, sample_chunks
from autophagy.training import train_diffusion
from loops.artifacts import load_unet
from loops.run import load_data_for
from loops.samplers import shift_indices, shift_mix

TARGET_0_1 = "0.3,0.3,0.05,0.05,0.05,0.05,0.05,0.05,0.05,0.05"


def mix(classes: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(classes, minlength=k)[:k] / len(classes)


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


STREAMS = {"plain": 901, "aux_sample": 902, "aux_own": 903, "guided": 904}  # seed streams apart from a run's


def draw(denoiser: GuidedDenoiser, cfg: RunConfig, n: int, stream: str) -> np.ndarray:
    chunks = sample_chunks(denoiser, cfg, n, (cfg.seed, STREAMS[stream]), "sample")
    return np.concatenate([images for _, images, _ in chunks])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--target", default=TARGET_0_1)
    parser.add_argument("--aux-steps", default="100,1000")
    parser.add_argument("--omegas", default="2,4,8")
    parser.add_argument("--n", type=int, default=1000, help="draws per measured mix")
    parser.add_argument("--exaggeration", type=float, default=1.0, help="κ of the auxiliary mix (--shift-exaggeration)")
    args = parser.parse_args()

    cfg = RunConfig.from_dict(json.loads((args.run / "config.json").read_text()))
    q = np.array([float(v) for v in args.target.split(",")])
    real = load_data_for(cfg)
    lenet = train_lenet(real)
    k = real.num_classes
    base = load_unet(args.run / "gen_000" / "model").eval()

    own = draw(GuidedDenoiser(base), cfg, args.n, "plain")
    pi_r = mix(lenet.classify(own), k)
    print(f"target q       {np.round(q, 3)}  (κ = {args.exaggeration:g})")
    print(f"base own π_r   {np.round(pi_r, 3)}  TV to q {tv(pi_r, q):.3f}")
    aux_set_source = draw(GuidedDenoiser(base), cfg, cfg.n_aux, "aux_sample")
    source_classes = lenet.classify(aux_set_source)
    rows = []
    for omega in [float(w) for w in args.omegas.split(",")]:
        chosen = shift_indices(source_classes, q, omega, np.random.default_rng(0), args.exaggeration)
        pi_s = mix(source_classes[chosen], k)
        for steps in [int(s) for s in args.aux_steps.split(",")]:
            aux, _ = train_diffusion(copy.deepcopy(base), aux_set_source[chosen], None, cfg,
                                     steps, (cfg.seed, 0, 99), description=f"aux ω={omega:g} {steps} steps")
            aux.eval()
            pi_a = mix(lenet.classify(draw(GuidedDenoiser(aux), cfg, args.n, "aux_own")), k)
            g = mix(lenet.classify(draw(GuidedDenoiser(base, aux, omega), cfg, args.n, "guided")), k)
            predicted = pi_r ** (1 + omega) * np.maximum(pi_a, 1e-3) ** (-omega)
            predicted /= predicted.sum()
            row = {"omega": omega, "aux_steps": steps, "pi_s_tv": tv(pi_s, q), "pi_s_vs_r": tv(pi_s, pi_r),
                   "pi_a_vs_r": tv(pi_a, pi_r), "adoption": tv(pi_a, pi_r) / max(tv(pi_s, pi_r), 1e-9),
                   "guided_tv": tv(g, q), "predicted_tv": tv(predicted, q), "plain_tv": tv(pi_r, q),
                   "pi_s": np.round(pi_s, 3).tolist(), "pi_a": np.round(pi_a, 3).tolist(), "g": np.round(g, 3).tolist()}
            rows.append(row)
            print(f"ω={omega:g} aux {steps:5d} steps: π_s {np.round(pi_s, 3)}\n"
                  f"    π_a {np.round(pi_a, 3)}  (moved {row['pi_a_vs_r']:.3f} of π_s's {row['pi_s_vs_r']:.3f} from π_r)\n"
                  f"    g   {np.round(g, 3)}  TV to q {row['guided_tv']:.3f} (plain {row['plain_tv']:.3f}, "
                  f"ratio {row['guided_tv'] / row['plain_tv']:.2f}; derivation from π_a predicts {row['predicted_tv']:.3f})",
                  flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    with threads.claim():  # a share of the cores by what else autophagy runs here, as a run takes
        main()

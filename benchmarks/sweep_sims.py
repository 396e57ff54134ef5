"""Pick SIMS's ω (and Neon's w) on the VALIDATION split, with models seeded exactly as the loop seeds them.

    python benchmarks/sweep_sims.py [--preset cpu] [--set FIELD=VALUE,...] [--seeds 0]
                                    [--omegas 0.5,1,2,3 (empty: no SIMS)] [--neon 0.5,1,2]
                                    [--neon-steps 11,30 --neon-lrs 2e-4,2e-3]

For each seed: generation 0 of a SIMS run with `evaluate_on=validation` (base θ_0 and the auxiliary
model are the very models `autophagy run --regime sims` trains: same seeds, same code, the
loop's own `GenerationContext`), then S_0 drawn with every ω and scored against the validation
split; the reference set (the test set) is never read. Prints one line per ω with the machine.
Neon's w is searched jointly with its fine-tune (as its paper does): every --neon-steps × --neon-lrs
pair fine-tunes its own auxiliary model with Neon's budget otherwise (`neon_budget`: n_aux, ramp), and
every w merges with each of them.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import shutil
import time
from pathlib import Path

from autophagy import hardware
from autophagy.config import make_config
from autophagy.rundir import RunDir
from frontier import parse_variant
from autophagy.sampling import GuidedDenoiser
from loops.generation import GenerationContext
from loops.run import RunState, load_data_for, process_state
from loops.regimes import validate_run
from loops.samplers import neon_budget, neon_merge


def _numbers(text: str, kind) -> list:
    return [kind(v) for v in text.split(",") if v]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--set", default="", help="FIELD=VALUE,... overrides of the preset, as frontier.py's variants "
                   "(a candidate base)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--omegas", default="0.5,1,2,3")
    p.add_argument("--neon", default="", help="Neon weights w to score too, e.g. 0.5,1,2")
    p.add_argument("--neon-steps", default="", help="Neon fine-tune lengths to search with w (default: the budget's)")
    p.add_argument("--neon-lrs", default="", help="Neon fine-tune learning rates to search (default: the budget's)")
    p.add_argument("--out", type=Path, default=Path("runs/sweep-sims-validation"))
    args = p.parse_args()
    print(hardware.describe(), flush=True)
    for seed in map(int, args.seeds.split(",")):
        cfg = validate_run(make_config(args.preset, regime="sims", generations=1, seed=seed, evaluate_on="validation",
                                       **parse_variant(args.set)))
        rd = RunDir(args.out / f"s{seed}")
        rd.root.mkdir(parents=True, exist_ok=True)
        rd.check_or_write_config(cfg)
        loop = RunState(cfg, rd, load_data_for(cfg), process_state(), print)
        gen = GenerationContext(loop, 0)
        start = time.perf_counter()
        base, _ = gen.base_model(gen.training_data())
        print(f"seed {seed}: base model {time.perf_counter() - start:.0f}s", flush=True)
        candidates = [("plain θ_0", gen.denoiser(base))]   # SIMS ω = 0 and Neon w = 0
        if omegas := _numbers(args.omegas, float):
            aux, cost = gen.auxiliary_model(base)
            print(f"seed {seed}: SIMS auxiliary model {cost['seconds']:.0f}s", flush=True)
            candidates += [(f"SIMS ω={w:g}", GuidedDenoiser(base, aux, w)) for w in omegas]
        for steps, lr in itertools.product(_numbers(args.neon_steps, int) or [0], _numbers(args.neon_lrs, float) or [0.0]):
            budget = neon_budget(dataclasses.replace(cfg, neon_aux_train_steps=steps, neon_learning_rate=lr))
            neon_aux, cost = gen.auxiliary_model(base, f"neon_aux_{budget['train_steps']}_{budget['learning_rate']:g}",
                                                 **budget)
            label = f"{budget['train_steps']} steps lr {budget['learning_rate']:g} ({cost['train_images']} images)"
            candidates += [(f"Neon w={w:g} {label}", gen.denoiser(neon_merge(base, neon_aux, w)))
                           for w in _numbers(args.neon, float)]
        for name, denoiser in candidates:
            chunk_dir = gen.work_dir / "chunks"   # the same seeds for every candidate: paired draws
            start = time.perf_counter()
            samples, _ = gen.draw(denoiser, cfg.n_synthetic, "sample")
            seconds = time.perf_counter() - start
            row = loop.scorer.score(samples, seed)
            print(f"seed {seed} {name:40s} validation fid {row['fid']:7.1f} kid {row['kid']:7.3f} precision "
                  f"{row['precision']:.3f} recall {row['recall']:.3f} coverage {row['coverage']:.3f} "
                  f"classes {row['classes_covered']} | sample {seconds:.0f}s", flush=True)
            shutil.rmtree(chunk_dir)


if __name__ == "__main__":
    main()

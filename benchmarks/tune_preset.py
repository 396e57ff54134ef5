"""Choose the cpu preset's training settings on the VALIDATION split, never on the reference set.

    python benchmarks/tune_preset.py --variants "batch_size=32,learning_rate=1e-3" "batch_size=64,learning_rate=2e-3"

Each variant is a normal one-generation run (`evaluate_on=validation`, the loop's own seeds), so
generation 0 is trained and sampled exactly as `autophagy run` would; the script prints its time and
validation-split metrics with the machine it ran on. Run folders go to --out (reused on a rerun).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from autophagy import hardware
from autophagy.config import RunConfig, make_config
from loops.run import run_loop


def parse_variant(text: str) -> dict:
    """'batch_size=64,learning_rate=2e-3' -> typed overrides of RunConfig fields."""
    types = {f.name: f.type for f in RunConfig.__dataclass_fields__.values()}
    values = {}
    for item in filter(None, text.split(",")):
        name, value = item.split("=")
        kind = {"int": int, "float": float, "str": str, "bool": lambda v: v.lower() in ("1", "true")}[str(types[name])]
        values[name] = kind(value)
    return values


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=[""], help="comma-separated FIELD=VALUE overrides, one per variant")
    p.add_argument("--regime", default="synthetic-augmentation", help="regime (generation 0 does not depend on it)")
    p.add_argument("--generations", type=int, default=1)
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", type=Path, default=Path("runs/tune"))
    args = p.parse_args()
    print(hardware.describe(), flush=True)
    for text in args.variants:
        for seed in map(int, args.seeds.split(",")):
            cfg = make_config("cpu", regime=args.regime, generations=args.generations, seed=seed,
                              evaluate_on="validation", **parse_variant(text))
            name = (text.replace("=", "").replace(",", "_") or "default") + f"-{args.regime}-s{seed}"
            start = time.perf_counter()
            rd = run_loop(cfg, args.out / name, log=lambda *_: None)
            seconds = time.perf_counter() - start
            for row in rd.read_rows():
                plain = f" plain_fid {row['plain_fid']:.1f} plain_recall {row['plain_recall']:.3f}" if "plain_fid" in row else ""
                print(f"{text or 'default':45s} s{seed} gen {row['generation']} fid {row['fid']:6.1f} "
                      f"recall {row['recall']:.3f} precision {row['precision']:.3f} "
                      f"classes {row.get('classes_covered')}{plain} | train {row['train_seconds']:.1f}s "
                      f"sample {row['sample_seconds']:.1f}s aux {row['aux_seconds']:.1f}s | wall {seconds:.0f}s",
                      flush=True)


if __name__ == "__main__":
    main()

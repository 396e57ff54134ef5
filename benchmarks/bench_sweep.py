"""Sweep on Ray vs the same runs one after another: wall time, and where the time goes.

    python benchmarks/bench_sweep.py [--workers 2] [--generations 3] [--seeds 0,1] [--regimes fully-synthetic,sims]

Runs the grid regime x seeds twice into fresh folders: once in this process (`--workers 1`, no Ray)
and once with `--workers N` Ray workers (each with cores // N torch threads); prints both wall times,
the speed-up, Ray's start-up time, and the summed training and sampling seconds of the rows. The data
arrays and the feature network are built (or loaded from the cache) before either timing starts.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from autophagy import hardware
from autophagy.config import make_config
from autophagy.features import build_extractor
from loops.run import load_data_for
from loops.sweep import expand, run_sweep


def timed_sweep(runs, out: Path, workers: int) -> tuple[float, float]:
    start = time.perf_counter()
    ray_start = 0.0
    if workers > 1:
        import os
        import ray
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep
                                           + os.environ.get("PYTHONPATH", "")}})
        ray_start = time.perf_counter() - start
    summary = run_sweep(runs, out, workers=workers, log=lambda *_: None)
    assert all(s["state"] == "finished" for s in summary), summary
    return time.perf_counter() - start, ray_start


def stage_seconds(out: Path) -> dict:
    totals = {"train_seconds": 0.0, "aux_seconds": 0.0, "sample_seconds": 0.0, "health_seconds": 0.0,
              "metric_seconds": 0.0}
    for rows in out.glob("*/metrics.jsonl"):
        for row in map(json.loads, rows.read_text().splitlines()):
            if "reused_from" in row:
                continue
            for key in totals:
                totals[key] += row.get(key, 0.0)   # health_seconds: rows from 2026-12-06 on
    return totals


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--regimes", default="fully-synthetic,sims")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--modes", default="sequential,ray", help="which timings to take (default: both)")
    args = p.parse_args()
    print(f"machine: {hardware.describe()}", flush=True)
    runs = expand(make_config(args.preset, generations=args.generations), {"regime": args.regimes.split(",")},
                  [int(s) for s in args.seeds.split(",")])
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    start = time.perf_counter()  # one-time caches (data arrays, the feature network) before either timing
    build_extractor(runs[0][1], load_data_for(runs[0][1]))
    print(f"data and feature network ready in {time.perf_counter() - start:.0f}s (cached after the first time)", flush=True)
    modes = args.modes.split(",")
    if "sequential" in modes:
        wall_seq, _ = timed_sweep(runs, root / "sequential", 1)
        print(f"sequential (1 process, {hardware.torch.get_num_threads()} threads): {wall_seq:.0f}s  "
              f"stages {stage_seconds(root / 'sequential')}", flush=True)
    if "ray" in modes:
        wall_ray, ray_start = timed_sweep(runs, root / "ray", args.workers)
        print(f"ray ({args.workers} workers): {wall_ray:.0f}s, of which Ray start-up {ray_start:.1f}s  "
              f"stages {stage_seconds(root / 'ray')}")
    if {"sequential", "ray"} <= set(modes):
        print(f"speed-up {wall_seq / wall_ray:.2f}x for {len(runs)} runs x {args.generations} generations")


if __name__ == "__main__":
    main()

"""The default run, timed: wall time, time per stage, memory per generation.

    python benchmarks/bench_default_run.py [--regime sims] [--generations 10] [--fresh-cache]

Runs `autophagy run --regime R --generations G` (no other flags: the cpu preset) into a new folder,
then prints the wall time, each generation's stages from metrics.jsonl, the share of metrics in a
generation's time, and resident memory after every generation.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regime", default="sims")
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--fresh-cache", action="store_true", help="empty cache: include data conversion and lenet training")
    p.add_argument("--out", type=Path, help="run folder (default: a new temporary folder)")
    p.add_argument("extra", nargs="*", help="more arguments for autophagy run, after --")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-run-")) / "run"
    env = dict(os.environ)
    if args.fresh_cache:
        env["AUTOPHAGY_CACHE"] = tempfile.mkdtemp(prefix="bench-cache-")
    cmd = [sys.executable, "-m", "autophagy", "run", "--regime", args.regime, "--generations", str(args.generations),
           "--out", str(out), *args.extra]
    from autophagy import hardware
    print(f"machine: {hardware.describe()}", flush=True)
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    print(f"\n{'gen':>3} {'train s':>8} {'aux s':>6} {'sample s':>8} {'health s':>8} {'metrics s':>9} {'metrics %':>9} "
          f"{'rss MB':>7} {'peak MB':>7}  fid / precision / recall / classes")
    stage_sum = 0.0
    for r in rows:
        health = r.get("health_seconds", 0.0)   # the unguided draw of a guided sampler (rows from 2026-12-06 on)
        total = r["train_seconds"] + r["aux_seconds"] + r["sample_seconds"] + health + r["metric_seconds"]
        stage_sum += total
        print(f"{r['generation']:>3} {r['train_seconds']:8.1f} {r['aux_seconds']:6.1f} {r['sample_seconds']:8.1f} "
              f"{health:8.1f} "
              f"{r['metric_seconds']:9.2f} {100 * r['metric_seconds'] / total:8.1f}% {r['rss_mb']:7.0f} "
              f"{r['peak_rss_mb']:7.0f}  {r['fid']:.1f} / {r['precision']:.3f} / {r['recall']:.3f} / "
              f"{r.get('classes_covered', '-')}")
    print(f"\nwall time {wall:.1f}s ({wall / 60:.2f} min) for {len(rows)} generations of {args.regime}; "
          f"generations {stage_sum:.1f}s, start-up, data, features, baseline and saving {wall - stage_sum:.1f}s")
    print(f"run folder: {out}")


if __name__ == "__main__":
    main()

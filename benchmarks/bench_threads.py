"""Two autophagy processes on one machine: training throughput of one process alone, of two at once
with autophagy's thread decision (autophagy.threads: each takes cores // processes), and of two at
once that each take every core (torch's default, `--threads` = cores), as a user starting a second
experiment beside a first would; and a run beside a process that is not a run (a notebook, a test) and
calls the engine's trainer directly, which registers only for the duration of its training.

    python benchmarks/bench_threads.py --steps 150

Each worker trains the cpu preset's UNet on R_0 with the loop's own trainer for --steps steps and prints
its steps/s; the figures are printed with the machine they were measured on.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def worker(steps: int, requested: int, role: str) -> None:
    from contextlib import nullcontext
    import torch
    from autophagy import threads
    from autophagy.config import make_config
    from autophagy.models import build_unet
    from autophagy.training import train_diffusion
    from loops.regimes import RealDraws
    from loops.run import load_data_for
    cfg = make_config("cpu", regime="fully-synthetic", generations=1, train_steps=steps, checkpoint_every=0)
    real = load_data_for(cfg)
    images = real.images[RealDraws(real.pool, cfg).draw(0)]
    seen = []   # the thread count while training (a notebook's count is restored when training ends)

    def on_step(done, _ema):
        if done == steps:
            seen.append(torch.get_num_threads())

    # a run claims for its life (loops/run.py); a notebook does not, the trainer claims for itself
    with threads.claim(requested) if role == "run" else nullcontext():
        time.sleep(1.0)      # both workers started before either measures
        threads.rebalance()
        start = time.perf_counter()
        train_diffusion(build_unet(cfg, real.channels), images, None, cfg, steps, (0, 0, 0), None, "bench",
                        on_step=on_step)
        seconds = time.perf_counter() - start
        print(json.dumps({"steps_per_second": steps / seconds, "threads": seen[-1]}), flush=True)


def launch(roles: list[str], steps: int, requested: int) -> list[dict]:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", role, "--steps", str(steps), "--threads",
                               str(requested)], stdout=subprocess.PIPE, text=True, env=env) for role in roles]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--worker", choices=("run", "notebook"), help="(internal) one timed process of that role")
    args = p.parse_args()
    if args.worker:
        return worker(args.steps, args.threads, args.worker)
    from autophagy import hardware
    from autophagy.threads import cores
    print(hardware.describe())
    alone = launch(["run"], args.steps, 0)[0]
    shared = launch(["run", "run"], args.steps, 0)
    beside = launch(["run", "notebook"], args.steps, 0)
    greedy = launch(["run", "run"], args.steps, cores())
    one = alone["steps_per_second"]
    for name, runs in (("one process alone (automatic)", [alone]), ("two at once, automatic threads", shared),
                       ("a run and a notebook's training", beside), ("two at once, each all cores", greedy)):
        total = sum(r["steps_per_second"] for r in runs)
        print(f"{name:34s} threads {[r['threads'] for r in runs]}  steps/s each "
              f"{[round(r['steps_per_second'], 2) for r in runs]}  together {total:.2f} = {total / one:.2f}x one")


if __name__ == "__main__":
    main()

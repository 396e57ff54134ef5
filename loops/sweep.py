"""A grid of runs (any RunConfig fields x seeds), each run a Ray task, generation 0 trained once per key.

    autophagy sweep --grid guidance_weight=0.5,1,2 --grid regime=sims,synthetic-augmentation --seeds 0,1,2

Phase 1 trains generation 0 once per gen-0 key (the first run of each key, as a one-generation run);
phase 2 copies that gen_000 into every other run of the key and runs all of them to the end. Each
generation of a run is one Ray task (the run's next one is submitted when it returns): with no address
Ray starts embedded on this machine with `workers` CPUs and each task sets torch's threads to
cores // workers; with `address` the tasks go to an existing cluster (every node must see `out`, e.g. a shared filesystem). One failing run does not stop the others.
Rerunning the same command resumes every run where it stopped. `workers=1` and no address runs the
grid in this process, without Ray. A run that another autophagy process holds (a second protocol that
shares this folder's control runs) is waited for, then resumed here, not failed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import traceback
from pathlib import Path

from autophagy import faults
from autophagy.config import PER_CLASS_FIELDS, ConfigError, RunConfig
from autophagy.rundir import RunDir, RunInUse, atomic_write_text
from loops.generation_zero import base_key, generation_zero_key, model_key, reuse_generation_zero, share_models
from loops.regimes import as_read


def parse_grid(items: list[str]) -> dict[str, list]:
    """['guidance-weight=0.5,1', 'regime=sims'] -> {'guidance_weight': [0.5, 1.0], 'regime': ['sims']};
    a per-class field's values are separated by ';' ('target-distribution=0.5,0.5;0.9,0.1')."""
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    grid = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if name == "preset":
            raise ConfigError(f"--grid: {item!r}: the preset cannot be swept (it sets many fields at once); "
                              f"run one sweep per --preset")
        if not sep or name not in fields or name in ("seed", "plugins"):
            raise ConfigError(f"--grid: {item!r} is not FIELD=V1,V2,... with FIELD a run setting "
                              f"(e.g. guidance_weight=0.5,1; seeds go to --seeds)")
        kind = {"int": int, "float": float, "str": str,
                "bool": lambda v: {"true": True, "false": False, "1": True, "0": False}[v.lower()]}.get(str(fields[name].type))
        if kind is None:
            raise ConfigError(f"--grid: {name} cannot be swept")
        separator = ";" if name in PER_CLASS_FIELDS else ","  # a per-class value holds commas itself
        try:
            grid[name] = [kind(v.strip()) for v in values.split(separator) if v.strip()]
        except (ValueError, KeyError):
            raise ConfigError(f"--grid: {item!r} holds a value that is not a {fields[name].type}") from None
        if not grid[name]:
            raise ConfigError(f"--grid: {item!r} lists no value")
        twice = sorted({str(v) for v in grid[name] if grid[name].count(v) > 1})
        if twice:
            raise ConfigError(f"--grid: {item!r} lists {', '.join(twice)} more than once; give each value once")
    return grid


def expand(base: RunConfig, grid: dict[str, list], seeds: list[int]) -> list[tuple[str, RunConfig]]:
    """(folder name, config) per grid point and seed; names carry the swept fields, then the seed."""
    import itertools
    names = list(grid)
    runs = []
    for values in itertools.product(*(grid[n] for n in names)):
        point = dict(zip(names, values))
        label = "_".join(str(v) if n == "regime" else f"{n}={v}" for n, v in point.items()) or base.regime
        for seed in seeds:
            runs.append((folder_name(f"{label}-s{seed}"), dataclasses.replace(base, seed=seed, **point)))
    return runs


def folder_name(label: str) -> str:
    """A run folder name that stays inside the sweep's folder whatever the swept values hold (a path
    such as data=../../x): one path component, no separators, not starting with a dot."""
    import re
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", label).lstrip(".") or "run"


IN_USE = "in use"  # a run's state while another autophagy process holds its folder


def _run_one(cfg_values: dict, out: str, threads: int, cwd: str) -> dict:
    """One run to its end (a Ray task, or a plain call); returns its state instead of raising. The run's
    plug-ins are imported here too (a Ray worker is a fresh process), relative to the driver's folder."""
    from loops.run import resolve_config, run_loop
    try:
        cfg = resolve_config(RunConfig.from_dict(cfg_values), plugin_dir=Path(cwd))
        run_loop(cfg, out, log=lambda *_: None, threads_requested=threads)
        return {"run": out, "state": "finished", "error": ""}
    except RunInUse as exc:  # another driver (a protocol sharing this folder's control runs) is running it
        return {"run": out, "state": IN_USE, "error": str(exc)}
    except BaseException as exc:  # one failing run must not stop the others
        return {"run": out, "state": "failed", "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=3)}


class _Executor:
    """Runs a batch of (config, folder) to their ends: in this process, or as Ray tasks."""

    def __init__(self, workers: int, address: str | None):
        self.workers, self.address = workers, address
        self.threads = max(1, (os.cpu_count() or 1) // workers) if not address else 0
        self.ray = None
        if workers > 1 or address:
            import ray
            if not ray.is_initialized():
                ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                         log_to_driver=False, configure_logging=False,
                         runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [
                             str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))}})
            self.ray = ray
            self.remote = ray.remote(num_cpus=1, max_retries=0)(_run_one)

    def run(self, jobs: list[tuple[RunConfig, Path]]) -> list[dict]:
        """Every (config, folder) to its last generation. In this process, one call a run. On Ray, one
        task a generation of a run, the run's next generation submitted when one returns: the workers
        share out generations rather than whole runs, so 3 seeds on 2 workers take about 1.5 runs' time,
        not 2 (with whole runs as tasks, the third ran alone while the other worker idled)."""
        cwd = os.getcwd()
        if self.ray is None:
            return [_run_one(json.loads(cfg.to_json()), str(path), 0, cwd) for cfg, path in jobs]
        pending, states = {}, {}

        def submit(cfg: RunConfig, path: Path) -> None:   # its next generation (all are done: one check-up call)
            done = len(RunDir(path).done_generations())
            step = dataclasses.replace(cfg, generations=min(cfg.generations, done + 1))
            pending[self.remote.remote(json.loads(step.to_json()), str(path), self.threads, cwd)] = (cfg, path, done)

        for cfg, path in jobs:
            submit(cfg, path)
        while pending:
            [ref], _ = self.ray.wait(list(pending), num_returns=1)
            cfg, path, before = pending.pop(ref)
            result, done = self.ray.get(ref), len(RunDir(path).done_generations())
            if result["state"] == "finished" and done < cfg.generations:
                if done > before:
                    submit(cfg, path)
                    continue
                result = {**result, "state": "failed", "error": f"generation {done} did not finish"}
            states[str(path)] = result
        return [states[str(path)] for _, path in jobs]


def _finished_elsewhere(out: Path, names: set[str]) -> list[tuple[str, RunConfig]]:
    """Run folders in `out` outside this sweep (another sweep's, another protocol's) whose generation 0 is
    finished: they own their generation-0 key and lend their models, so sweeps in one folder share work.
    A folder that cannot be read, or whose method is not loaded here, is passed over."""
    found = []
    for path in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in names):
        rd = RunDir(path)
        try:
            cfg = rd.saved_config() if rd.is_done(0) else None
            if cfg is not None:
                generation_zero_key(cfg)
                found.append((path.name, cfg))
        except (ConfigError, KeyError, OSError):
            continue
    return found


def run_sweep(runs: list[tuple[str, RunConfig]], out: Path | str, workers: int = 1, address: str | None = None,
              grid: dict | None = None, seeds: list[int] | None = None, log=print,
              record: str = "sweep.json") -> list[dict]:
    """Run (or resume) every (name, config) into out/<name>/; returns each run's state and error. `record`
    names the file in `out` that lists the grid (a protocol writes its own, beside other protocols')."""
    from loops.run import load_data_for, process_state as _process_state
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, cfg in runs:  # fail fast on every run's data and folder before any training: a folder that
        load_data_for(cfg)  # holds a run with other settings (a protocol's earlier version) is refused here,
        RunDir(out / name).check_config(cfg, resolve=as_read)  # not after other runs have trained
    if _process_state().is_main_process:
        atomic_write_text(out / record, json.dumps({
            "grid": grid or {}, "seeds": seeds or sorted({c.seed for _, c in runs}),
            "executor": "ray" if workers > 1 or address else "local",
            "address": address or "", "workers": workers, "runs": [name for name, _ in runs]}, indent=2) + "\n")
    executor = _Executor(workers, address)
    owners: dict[str, tuple[str, RunConfig]] = {}
    done = {name for name, _ in runs if RunDir(out / name).is_done(0)}
    elsewhere = _finished_elsewhere(out, {name for name, _ in runs})  # other sweeps' runs in this folder
    ordered = [run for run in runs if run[0] in done] + elsewhere + [run for run in runs if run[0] not in done]
    for name, cfg in ordered:
        owners.setdefault(generation_zero_key(cfg), (name, cfg))  # a run that already has it owns the key
    # phase 1: generation 0 once per key, its models trained once across keys: θ_0 once per base key (the
    # same training, whatever the sampler), all models once per model key (keys that differ only in
    # sampling-only fields such as ω). Three waves: the runs that train θ_0; the first of each other model
    # key (θ_0 copied in, they train their auxiliary models); the rest (every model copied in: they only sample)
    base_trainer, model_trainer = {}, {}
    for name, cfg in owners.values():
        base_trainer.setdefault(base_key(cfg), name)
        model_trainer.setdefault(model_key(cfg), name)
    waves = [[], [], []]
    for name, cfg in owners.values():
        waves[0 if base_trainer[base_key(cfg)] == name else 1 if model_trainer[model_key(cfg)] == name else 2].append((name, cfg))
    states = {}
    for wave, batch in enumerate(waves):
        if wave and _process_state().is_main_process:
            for name, cfg in batch:
                source = base_trainer[base_key(cfg)] if wave == 1 else model_trainer[model_key(cfg)]
                if share_models(RunDir(out / source), RunDir(out / name), cfg, only_base=wave == 1):
                    log(f"{name}: generation 0's {'θ_0' if wave == 1 else 'models'} shared from {source}")
        faults.barrier(_process_state())
        first = [(dataclasses.replace(cfg, generations=1), out / name) for name, cfg in batch
                 if not RunDir(out / name).is_done(0)]
        if first:
            log(f"sweep: generation 0 of {len(first)} key(s) on {workers} worker(s)")
        states.update({s["run"]: s for s in executor.run(first)})
    # phase 2: reuse generation 0 (on the main process only: under `accelerate launch` every rank runs
    # this driver, and the copies must be made once), then every run to its end
    state = _process_state()
    if state.is_main_process:
        for name, cfg in runs:
            owner_name, _ = owners[generation_zero_key(cfg)]
            if owner_name != name and reuse_generation_zero(RunDir(out / owner_name), RunDir(out / name), cfg):
                log(f"{name}: generation 0 reused from {owner_name}")
    faults.barrier(state)
    jobs = [(cfg, out / name) for name, cfg in runs
            if states.get(str(out / owners[generation_zero_key(cfg)][0]), {}).get("state") != "failed"]
    log(f"sweep: {len(jobs)} run(s) on {workers} worker(s)")
    finished = {s["run"]: s for s in executor.run(jobs)}
    while busy := [(cfg, path) for cfg, path in jobs if finished[str(path)]["state"] == IN_USE]:
        # runs that another autophagy process holds (two protocols that share a control): wait for it to
        # let go, then resume them here, which finds its finished generations and goes on from there
        for _, path in busy:
            log(f"  {path.name}: in use by another autophagy process; waiting for it")
            RunDir(path).wait_until_free()
        finished.update({s["run"]: s for s in executor.run(busy)})
    summary = []
    for name, cfg in runs:
        path = str(out / name)
        summary.append(finished.get(path) or states.get(path) or {"run": path, "state": "failed",
                                                                   "error": "its generation 0 failed"})
    for s in summary:
        log(f"  {Path(s['run']).name}: {s['state']}{(' — ' + s['error']) if s['error'] else ''}")
    return summary

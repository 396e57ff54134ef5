"""Several regimes x seeds into one folder, generation 0 trained once where runs share it.

Generation 0 depends on the data, the seed, the training config and the sampler (a SIMS run draws
S_0 with the SIMS sampler), never on the regime. Runs with the same such key reuse the first run's
finished gen_000 (copied, DONE last), with its metrics row relabelled. Rerunning the same command
resumes every run where it stopped.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from autophagy.config import RunConfig
from autophagy.rundir import RunDir
from loops.regimes import sampler_of


def generation_zero_key(cfg: RunConfig) -> str:
    """Everything generation 0 depends on: the config without regime and generation count."""
    values = dataclasses.asdict(dataclasses.replace(cfg, regime="", generations=1, sampler=sampler_of(cfg)))
    if sampler_of(cfg) == "plain":
        for name in ("guidance_weight", "neon_weight", "n_aux", "aux_train_steps"):
            values.pop(name)
    for name in ("curation_keep", "n_real_fresh", "allow_reuse"):  # used from generation 1 on only
        values.pop(name)
    return json.dumps(values, sort_keys=True)


def reuse_generation_zero(source: RunDir, target: RunDir, cfg: RunConfig) -> bool:
    """Copy a finished gen_000 (and the run-level caches) from `source` into a fresh `target`."""
    if not source.is_done(0) or target.is_done(0):
        return False
    with target.locked():
        target.check_or_write_config(cfg)
        for name in ("baseline.json", "reference_features.npz"):
            if (source.root / name).exists() and not (target.root / name).exists():
                shutil.copy2(source.root / name, target.root / name)
        shutil.rmtree(target.gen(0), ignore_errors=True)
        shutil.copytree(source.gen(0), target.gen(0), ignore=shutil.ignore_patterns("DONE", "work"))
        row = next(r for r in source.read_rows() if r["generation"] == 0)
        target.append_row({**row, "regime": cfg.regime, "reused_from": str(source.root)})
        target.mark_done(0)
    return True


def run_compare(configs: list[RunConfig], out: Path | str, workers: int = 1, address: str | None = None,
                log=print) -> list[Path]:
    """A sweep over the regime: every config into out/<regime>-s<seed>/ (loops.sweep.run_sweep, so on
    Ray with workers > 1); returns the finished run folders (the CLI writes the report: loops never
    imports analysis). A failed run is reported in the summary and raises at the end."""
    from loops.sweep import run_sweep
    out = Path(out)
    runs = [(f"{cfg.regime}-s{cfg.seed}", cfg) for cfg in configs]
    summary = run_sweep(runs, out, workers, address, {"regime": list(dict.fromkeys(c.regime for c in configs))},
                        sorted({c.seed for c in configs}), log=log)
    failed = [s for s in summary if s["state"] != "finished"]
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: " + "; ".join(f"{Path(s['run']).name}: {s['error']}" for s in failed))
    return [out / name for name, _ in runs]

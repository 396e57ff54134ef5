"""Generation 0 shared across runs: it depends on the data, the seed, the training config and the
sampler with the fields it reads (a SIMS run draws S_0 with the SIMS sampler), never on the regime.
Runs with the same key reuse one finished gen_000 (copied, DONE last), with its row relabelled."""
from __future__ import annotations

import dataclasses
import json
import shutil

from autophagy.config import RunConfig
from autophagy.rundir import RunDir
from loops.regimes import regime_fields, sampler_of
from loops.samplers import SAMPLERS, sampler_fields


def generation_zero_key(cfg: RunConfig) -> str:
    """Everything generation 0 depends on: the config without the regime, the generation count, the
    fields regimes read (they act from generation 1 on) and the fields of samplers other than this one."""
    sampler = sampler_of(cfg)
    values = dataclasses.asdict(dataclasses.replace(cfg, regime="", generations=1, sampler=sampler))
    unused = (regime_fields() | sampler_fields()) - set(SAMPLERS[sampler].uses)
    return json.dumps({k: v for k, v in values.items() if k not in unused}, sort_keys=True)


def reuse_generation_zero(source: RunDir, target: RunDir, cfg: RunConfig) -> bool:
    """Copy a finished gen_000 (and the run-level caches) from `source` into a fresh `target`."""
    if not source.is_done(0) or target.is_done(0):
        return False
    with target.locked():
        target.check_or_write_config(cfg)
        for path in (source.baseline_path, source.reference_features_path):
            if path.exists() and not (target.root / path.name).exists():
                shutil.copy2(path, target.root / path.name)
        shutil.rmtree(target.gen(0), ignore_errors=True)
        shutil.copytree(source.gen(0), target.gen(0), ignore=shutil.ignore_patterns("DONE", "work", "row.json"))
        row = next(r for r in source.read_rows() if r["generation"] == 0)
        target.append_row({**row, "regime": cfg.regime, "reused_from": str(source.root)})
        target.mark_done(0)
    return True

"""Run folders into pandas: one row per run x generation, config fields as columns."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from autophagy.layout import (BASELINE, CONFIG, METRICS_FILE, REGIME_LABEL_KEYS, REPORT_METRICS, SAMPLES,
                              experiment_identity, generation_dir, parse_rows)

METRICS = REPORT_METRICS  # what reports tabulate and plot (the run folder's contract, autophagy.layout)


@dataclass(frozen=True)
class Reading:
    """How to read the configs of folders written by other preset versions, as the engine reads them
    (the composition root fills it from `RunConfig` and the registrations): `defaults`, each field's
    default, which is what a folder without the field meant; `method_fields`, the fields some registered
    regime or sampler reads."""
    defaults: dict = field(default_factory=dict)
    method_fields: frozenset = frozenset()


def _config(run: Path, rows: list[dict], reading: Reading | None = None) -> dict:
    """The run's config columns. With a `reading`, as its methods read it, so that folders of different
    preset versions compare by what they ran: a field the folder lacks takes its default, a method field
    its regime and sampler do not read (its rows' `uses`) takes its default (as `loops.regimes.as_read`
    does), and n_eval is the number of images scored (0 scores all of S_t)."""
    cfg = json.loads((run / CONFIG).read_text())
    if reading is not None:
        cfg = {**{k: v for k, v in reading.defaults.items() if k not in cfg}, **cfg}
        uses = rows[0].get("uses") if rows else None
        if isinstance(uses, dict):
            cfg.update({f: reading.defaults[f] for f in reading.method_fields - set(uses) if f in reading.defaults})
        if "n_eval" in cfg and "n_synthetic" in cfg:
            cfg["n_eval"] = cfg["n_eval"] or cfg["n_synthetic"]
    return {f"cfg_{k}": (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v) for k, v in cfg.items()}


def run_key(run: Path, rows: list[dict]) -> str:
    """The run's experiment identity (autophagy.layout.experiment_identity), with the sampler and the
    feature space resolved from its rows as the report groups them."""
    cfg = json.loads((run / CONFIG).read_text())
    if rows:
        cfg = {**cfg, "sampler": rows[0].get("sampler", cfg.get("sampler")),
               "features": rows[0].get("feature_space", cfg.get("features"))}
    return experiment_identity(cfg)


def _rows(path: Path) -> list[dict]:
    from analysis.experiments import ReportError
    try:
        rows = parse_rows((path / METRICS_FILE).read_text(errors="replace"))
    except ValueError as exc:
        raise ReportError(f"report: {str(path / METRICS_FILE)!r} {exc}; run the run's command again to rebuild "
                          f"it from its generations") from None
    gaps = sorted(set(range(max(r["generation"] for r in rows) + 1)) - {r["generation"] for r in rows}) if rows else []
    if gaps:
        raise ReportError(f"report: {str(path)!r} has no row for generation(s) {gaps}; run the run's command "
                          f"again to restore them")
    return _relabelled(rows)


def _relabelled(rows: list[dict]) -> list[dict]:
    """A generation 0 copied from another run (its row says `reused_from`) written before 2026-12-06 kept
    that run's regime labels: which fields its methods read, its own sampler, its control (a fresh-data
    run's generation 0 from a fully-synthetic run said it reads nothing, so two fresh-data runs that
    differ in n_real_fresh read as one). The run's own later rows say what its regime is."""
    own = next((r for r in rows if r["generation"] > 0 and not r.get("reused_from")), None)
    if own is None:
        return rows
    return [{**r, **{k: own[k] for k in REGIME_LABEL_KEYS if k in own}} if r.get("reused_from") else r for r in rows]


def load_runs(paths, reading: Reading | None = None) -> pd.DataFrame:
    """metrics.jsonl of every run folder, with `run` (folder name) and `cfg_*` config columns (read as
    `reading` says, when given)."""
    frames, seen = [], {}
    for path in map(Path, paths):
        rows = _rows(path)
        key = (run_key(path, rows), json.loads((path / CONFIG).read_text()).get("seed"))
        if key in seen:
            from analysis.experiments import ReportError
            raise ReportError(f"report: {str(path)!r} and {seen[key]!r} are the same experiment and seed; "
                              f"give one of them")
        seen[key] = str(path)
        if not rows:
            continue
        df = pd.DataFrame(rows)
        df.insert(0, "run", path.name)
        df["run_order"] = len(frames)  # experiments keep the order the runs were given in
        df["run_dir"] = str(path)
        for key, value in _config(path, rows, reading).items():
            df[key] = value
        frames.append(df)
    if not frames:
        raise ValueError("no finished generation in any of the run folders")
    return pd.concat(frames, ignore_index=True).sort_values(["run_order", "generation"], ignore_index=True)


def load_baselines(paths) -> pd.DataFrame:
    """The real-vs-real floor of every run (baseline.json), one row per run."""
    rows = []
    for path in map(Path, paths):
        if (path / BASELINE).exists():
            rows.append({"run": path.name, **json.loads((path / BASELINE).read_text())})
    return pd.DataFrame(rows)


def load_samples(run_dir, generation: int, n: int | None = None) -> np.ndarray:
    """S_t of a run as uint8 (N, C, H, W), the first n images."""
    with np.load(generation_dir(run_dir, generation) / SAMPLES, allow_pickle=False) as z:
        images = z["images"]
    return images if n is None else images[:n]

"""Run folders into pandas: one row per run x generation, config fields as columns."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from autophagy.layout import BASELINE, CONFIG, METRICS_FILE, REPORT_METRICS, SAMPLES, experiment_identity, generation_dir, parse_rows

METRICS = REPORT_METRICS  # what reports tabulate and plot (the run folder's contract, autophagy.layout)


def _config(run: Path) -> dict:
    cfg = json.loads((run / CONFIG).read_text())
    return {f"cfg_{k}": (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in cfg.items()}


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
    return rows


def load_runs(paths) -> pd.DataFrame:
    """metrics.jsonl of every run folder, with `run` (folder name) and `cfg_*` config columns."""
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
        for key, value in _config(path).items():
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

"""Run folders into pandas: one row per run x generation, config fields as columns."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "classes_covered", "memorization",
           "plain_fid", "plain_recall", "plain_coverage")


def _config(run: Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    return {f"cfg_{k}": (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in cfg.items()}


def run_key(run: Path) -> str:
    """The config minus the seed, as text: two folders with the same key and seed are one run twice."""
    cfg = json.loads((run / "config.json").read_text())
    return json.dumps({k: v for k, v in cfg.items() if k not in ("seed", "generations", "num_processes")}, sort_keys=True)


def load_runs(paths) -> pd.DataFrame:
    """metrics.jsonl of every run folder, with `run` (folder name) and `cfg_*` config columns."""
    frames, seen = [], {}
    for path in map(Path, paths):
        key = (run_key(path), json.loads((path / "config.json").read_text()).get("seed"))
        if key in seen:
            from analysis.experiments import ReportError
            raise ReportError(f"report: {str(path)!r} and {seen[key]!r} are the same experiment and seed; "
                              f"give one of them")
        seen[key] = str(path)
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
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
        if (path / "baseline.json").exists():
            rows.append({"run": path.name, **json.loads((path / "baseline.json").read_text())})
    return pd.DataFrame(rows)


def load_samples(run_dir, generation: int, n: int | None = None) -> np.ndarray:
    """S_t of a run as uint8 (N, C, H, W), the first n images."""
    with np.load(Path(run_dir) / f"gen_{generation:03d}" / "samples.npz") as z:
        images = z["images"]
    return images if n is None else images[:n]

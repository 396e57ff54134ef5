"""Several regimes x seeds into one folder: a sweep over the regime (loops.sweep), generation 0
trained once where runs share it. Rerunning the same command resumes every run where it stopped."""
from __future__ import annotations

from pathlib import Path

from autophagy.config import RunConfig
from loops.sweep import run_sweep


def run_compare(configs: list[RunConfig], out: Path | str, workers: int = 1, address: str | None = None,
                log=print) -> list[Path]:
    """Every config into out/<regime>-s<seed>/ (on Ray with workers > 1); returns the finished run
    folders (the CLI writes the report: loops never imports analysis). A failed run is reported in the
    summary and raises at the end."""
    out = Path(out)
    runs = [(f"{cfg.regime}-s{cfg.seed}", cfg) for cfg in configs]
    summary = run_sweep(runs, out, workers, address, {"regime": list(dict.fromkeys(c.regime for c in configs))},
                        sorted({c.seed for c in configs}), log=log)
    failed = [s for s in summary if s["state"] != "finished"]
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: " + "; ".join(f"{Path(s['run']).name}: {s['error']}" for s in failed))
    return [out / name for name, _ in runs]

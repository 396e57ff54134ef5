"""A protocol run to its verdict, and the claims ledger from verdicts (`autophagy protocol run` and
`autophagy protocol ledger` wrap these two functions).

run_protocol: the planned runs (`loops.protocols.plan`) as one sweep into `out`, resumed where it
stopped; then the tests on the finished runs' first `generations` rows, the leaderboard figures when the
protocol has a method point, the report `report-<tag>/` and `verdict-<tag>.json`, written atomically
last. <tag> is `name@version[+method][-smoke]`: a smoke run never overwrites the protocol's own verdict.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from autophagy import code_version, hardware
from autophagy.config import ConfigError, RunConfig
from autophagy.rundir import atomic_write_text
from loops.protocols import Protocol, board_control, claim_folder_check, plan_identity
from loops.sweep import run_sweep


def run_protocol(protocol: Protocol, runs: list[tuple[str, RunConfig]], experiment_of: dict[str, str], smoke: bool,
                 out: Path, workers: int = 1, address: str = "", settings: dict | None = None) -> dict:
    """Runs (or resumes) the protocol and returns its verdict's values (`path`: where they were written)."""
    from analysis.load import load_runs
    from analysis.report import write_report
    from analysis.verdicts import board_entry, decide
    record = claim_folder_check(out, protocol, smoke)
    tag = record.stem.removeprefix("protocol-")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps({"protocol": protocol.id, "identity": protocol.identity, "smoke": smoke,
                                          "values": protocol.values}, indent=2, ensure_ascii=False) + "\n")
    summary = run_sweep(runs, out, workers, address, seeds=sorted({c.seed for _, c in runs}),
                        record=f"sweep-{tag}.json")
    finished = [out / name for name, _ in runs if (out / name / "metrics.jsonl").is_file()]
    if not finished:
        raise ConfigError(f"protocol: no run of {protocol.id} finished a generation; see the messages above")
    generations = runs[0][1].generations
    df = load_runs(finished)
    held = df.groupby("run_dir")["generation"].max() + 1
    longer = {folder: int(n) for folder, n in held.items() if n > generations}   # they serve with their first G
    df = df[df["generation"] < generations].assign(experiment=lambda d: d["run"].map(experiment_of))
    verdict, results = decide(df, protocol.tests, generations)
    control = board_control(protocol)
    board = board_entry(df, protocol.method_point, control, generations - 1) if control else None
    report = write_report(finished, out / f"report-{tag}", generation=generations - 1)
    values = {"protocol": protocol.id, "identity": protocol.identity, "claim": protocol.claim,
              "source": protocol.source, "verdict": verdict, "smoke": smoke, "settings": settings or {},
              "plan_identity": plan_identity(runs),
              "tests": results, "board": board, "runs": [str(p) for p in finished], "generations": generations,
              "longer_runs": longer,
              "failed": [s["run"] for s in summary if s["state"] != "finished"],
              "machine": hardware.describe(), "code_version": code_version(),
              "figure": str((report / "curves.png").resolve()) if (report / "curves.png").is_file() else ""}
    path = out / f"verdict-{tag}.json"
    atomic_write_text(path, json.dumps(values, indent=2, ensure_ascii=False, default=float) + "\n")
    return {**values, "path": str(path)}


def write_ledger(verdict_files: list[Path], out: Path) -> list[dict]:
    """`out` (docs/claims.md) from verdict.json files, each claim's small figure copied into `claims/`
    beside it; returns the verdicts read. A verdict kept without its report (docs/verdicts) keeps the
    figure copied there before."""
    from analysis.verdicts import ledger_markdown
    verdicts = []
    figures = out.parent / "claims"
    for path in verdict_files:
        try:
            v = json.loads(path.read_text())
        except (OSError, ValueError):
            raise ConfigError(f"ledger: {str(path)!r} is not a readable verdict.json") from None
        if not isinstance(v, dict) or not {"protocol", "claim", "verdict", "tests"} <= set(v):
            raise ConfigError(f"ledger: {str(path)!r} is not a verdict.json (it lacks protocol, claim, verdict or tests)")
        tag = v["protocol"] + ("-smoke" if v.get("smoke") else "")
        source, kept = path.parent / f"report-{tag}" / "curves.png", figures / f"{tag}.png"
        if source.is_file():  # a small figure beside the ledger, linked relative to it
            figures.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, kept)
        v["figure"] = f"claims/{tag}.png" if kept.is_file() else ""
        verdicts.append(v)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(ledger_markdown(verdicts))
    return verdicts

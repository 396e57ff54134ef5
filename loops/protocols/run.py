"""A protocol's runs: the planned runs (`loops.protocols.plan`) as one sweep into `out`, resumed where it
stopped, under the folder's record of which protocol it holds. The verdict is then read from the
finished runs by `analysis.verdicts.protocol_verdict` (the CLI, the composition root, joins the two:
loops never imports analysis).
"""
from __future__ import annotations

import json
from pathlib import Path

from autophagy.config import ConfigError, RunConfig
from autophagy.rundir import atomic_write_text
from loops.protocols import RECORD_KEYS, Protocol, claim_folder_check
from loops.sweep import run_sweep


def run_protocol(protocol: Protocol, runs: list[tuple[str, RunConfig]], smoke: bool, out: Path, workers: int = 1,
                 address: str = "") -> tuple[str, list[Path], list[str]]:
    """Runs (or resumes) the protocol's runs: (tag, finished run folders, failed runs). <tag> is
    `name@version[+method][-smoke]`, so that a smoke run never overwrites the protocol's own verdict."""
    record = claim_folder_check(out, protocol, smoke)
    tag = record.stem.removeprefix("protocol-")
    out.mkdir(parents=True, exist_ok=True)
    what_ran = dict(zip(RECORD_KEYS, (protocol.id, protocol.identity, smoke, protocol.values)))
    atomic_write_text(record, json.dumps(what_ran, indent=2, ensure_ascii=False) + "\n")
    summary = run_sweep(runs, out, workers, address, seeds=sorted({c.seed for _, c in runs}),
                        record=f"sweep-{tag}.json")
    finished = [out / name for name, _ in runs if (out / name / "metrics.jsonl").is_file()]
    if not finished:
        raise ConfigError(f"protocol: no run of {protocol.id} finished a generation; see the messages above")
    return tag, finished, [s["run"] for s in summary if s["state"] != "finished"]

"""The run folder: the contract between loops/ (writes) and analysis/ (reads).

    config.json            resolved config; a rerun with a different config refuses
    metrics.jsonl          one JSON row per finished generation
    baseline.json          the real-vs-real floor (training pool vs reference), once per run
    reference_features.npz cached features of the reference set
    gen_003/model/         save_pretrained output (aux_model/ too for the SIMS sampler)
    gen_003/samples.npz    S_t as uint8 with labels where known
    gen_003/grid.png       a sample grid
    gen_003/DONE           written last, atomically

Every file is written to a temporary name and renamed into place.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from autophagy.config import ConfigError, RunConfig, config_differences


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_npz(path: Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_pretrained(pipeline, path: Path) -> None:
    """save_pretrained into a temporary folder, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipeline.save_pretrained(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


class RunDir:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._lock = FileLock(str(self.root / ".lock"))

    # --- paths (zero-padded, never parsed out of free-form strings)
    @property
    def config_path(self) -> Path: return self.root / "config.json"
    @property
    def metrics_path(self) -> Path: return self.root / "metrics.jsonl"
    @property
    def baseline_path(self) -> Path: return self.root / "baseline.json"
    @property
    def reference_features_path(self) -> Path: return self.root / "reference_features.npz"

    def gen(self, t: int) -> Path: return self.root / f"gen_{t:03d}"
    def model_dir(self, t: int) -> Path: return self.gen(t) / "model"
    def aux_model_dir(self, t: int) -> Path: return self.gen(t) / "aux_model"
    def merged_model_dir(self, t: int) -> Path: return self.gen(t) / "merged_model"   # Neon
    def samples_path(self, t: int) -> Path: return self.gen(t) / "samples.npz"
    def plain_samples_path(self, t: int) -> Path: return self.gen(t) / "plain_samples.npz"  # guided runs' health draws
    def grid_path(self, t: int) -> Path: return self.gen(t) / "grid.png"
    def done_path(self, t: int) -> Path: return self.gen(t) / "DONE"
    def work_dir(self, t: int) -> Path: return self.gen(t) / "work"   # checkpoints and sample chunks
    def is_done(self, t: int) -> bool: return self.done_path(t).exists()

    # --- lifecycle
    @contextmanager
    def locked(self):
        """Exclusive lock: a second process writing the same run folder gets a clear error."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise ConfigError(f"--out: run folder {str(self.root)!r} is in use by another autophagy process") from None
        try:
            yield self
        finally:
            self._lock.release()

    def check_or_write_config(self, cfg: RunConfig, overwrite: bool = False, num_processes: int = 1,
                              resolve=None) -> None:
        """Refuse a folder that holds a run with other settings (compared after `resolve`, which maps a
        config to what it means on this data, e.g. `--features auto` to lenet); write config.json (with
        the process count, which is recorded but may change on resume)."""
        if self.config_path.exists() and not overwrite:
            saved = RunConfig.from_dict(json.loads(self.config_path.read_text()))
            diff = config_differences(*map(resolve, (saved, cfg))) if resolve else config_differences(saved, cfg)
            if diff:
                raise ConfigError(f"--out: run folder {str(self.root)!r} holds a run with other settings "
                                  f"({'; '.join(diff)}); pass --overwrite to replace it or choose another --out")
            if saved.generations >= cfg.generations:
                return
        values = {**json.loads(cfg.to_json()), "num_processes": num_processes}
        atomic_write_text(self.config_path, json.dumps(values, indent=2, sort_keys=True) + "\n")

    def read_rows(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def append_row(self, row: dict) -> None:
        """Append a generation's row; a row of the same generation left by an interrupted run is replaced."""
        self.write_rows([r for r in self.read_rows() if r["generation"] != row["generation"]] + [row])

    def write_rows(self, rows: list[dict]) -> None:
        rows = sorted(rows, key=lambda r: r["generation"])
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    def mark_done(self, t: int) -> None:
        atomic_write_text(self.done_path(t), "done\n")
        shutil.rmtree(self.work_dir(t), ignore_errors=True)

    def load_plain_samples(self, t: int) -> np.ndarray | None:
        """A guided run's unguided health draws of generation t, or None where they were not kept."""
        if not self.plain_samples_path(t).exists():
            return None
        with np.load(self.plain_samples_path(t)) as z:
            return z["images"]

    def load_samples(self, t: int) -> tuple[np.ndarray, np.ndarray | None]:
        with np.load(self.samples_path(t)) as z:
            return z["images"], (z["labels"] if "labels" in z.files else None)

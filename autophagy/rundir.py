"""The run folder: the contract between loops/ (writes) and analysis/ (reads); its layout is written
down once in `autophagy.layout`.

A run folder is untrusted input: nothing in it is unpickled, everything read from it is checked, and
a damaged file gives one line naming it and what to do (`RunFolderError`, exit 2) or, where that is
safe, is rebuilt. Every file is written to a temporary name and renamed into place.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from autophagy import layout
from autophagy.config import ConfigError, RunConfig, config_differences


class RunFolderError(ConfigError):
    """A run folder that is damaged or not autophagy's: one line naming the file (exit code 2)."""


class RunInUse(ConfigError):
    """The run folder is locked by another live autophagy process (a sweep waits for it, a run stops)."""


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


def atomic_save_pretrained(pipeline, path: Path, extra: dict[str, str] | None = None) -> None:
    """save_pretrained (and `extra` text files, e.g. the training stats) into a temporary folder, then
    rename it into place: the model and what belongs to it appear together or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipeline.save_pretrained(str(tmp))
    for name, text in (extra or {}).items():
        atomic_write_text(tmp / name, text)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


class RunDir:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._lock = FileLock(str(self.root / ".lock"))

    # --- paths (zero-padded, never parsed out of free-form strings)
    @property
    def config_path(self) -> Path: return self.root / layout.CONFIG
    @property
    def metrics_path(self) -> Path: return self.root / layout.METRICS_FILE
    @property
    def baseline_path(self) -> Path: return self.root / layout.BASELINE
    @property
    def reference_features_path(self) -> Path: return self.root / layout.REFERENCE_FEATURES
    @property
    def marker_path(self) -> Path: return self.root / layout.MARKER

    def gen(self, t: int) -> Path: return layout.generation_dir(self.root, t)
    def model_dir(self, t: int) -> Path: return self.gen(t) / layout.MODEL
    def aux_model_dir(self, t: int) -> Path: return self.gen(t) / layout.AUX_MODEL
    def merged_model_dir(self, t: int) -> Path: return self.gen(t) / layout.MERGED_MODEL   # Neon
    def samples_path(self, t: int) -> Path: return self.gen(t) / layout.SAMPLES
    def health_samples_path(self, t: int) -> Path: return self.gen(t) / layout.HEALTH_SAMPLES  # guided runs
    def eval_samples_path(self, t: int) -> Path: return self.gen(t) / layout.EVAL_SAMPLES  # --n-eval > --n-synthetic
    def grid_path(self, t: int) -> Path: return self.gen(t) / layout.GRID
    def done_path(self, t: int) -> Path: return self.gen(t) / layout.DONE
    def row_path(self, t: int) -> Path: return self.gen(t) / "row.json"   # the generation's row, kept with it
    def work_dir(self, t: int) -> Path: return self.gen(t) / layout.WORK   # checkpoints and sample chunks
    def is_done(self, t: int) -> bool: return self.done_path(t).exists()

    def done_generations(self) -> list[int]:
        """Generations marked DONE, from 0 up to the first that is not."""
        done = []
        while self.is_done(len(done)):
            done.append(len(done))
        return done

    # --- lifecycle
    @contextmanager
    def locked(self):
        """Exclusive lock: a second process writing the same run folder gets a clear error."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise RunInUse(f"--out: run folder {str(self.root)!r} is in use by another autophagy process") from None
        try:
            yield self
        finally:
            self._lock.release()

    def wait_until_free(self, poll: float = 5.0) -> None:
        """Block until no other process holds this folder's lock (it finished, or died: the lock goes with it)."""
        while True:
            try:
                self._lock.acquire(timeout=poll)
            except Timeout:
                continue
            self._lock.release()
            return

    def saved_config(self) -> RunConfig | None:
        """The run's config.json, checked (None where there is none yet)."""
        if not self.config_path.exists():
            if self.metrics_path.exists() or self.is_done(0):
                raise RunFolderError(f"--out: run folder {str(self.root)!r} holds finished generations but no "
                                     f"config.json, so what they measured is unknown; restore config.json, or "
                                     f"pass --overwrite to start again")
            return None
        try:
            values = json.loads(self.config_path.read_text())
            if not isinstance(values, dict):
                raise ValueError("not a JSON object")
            return RunConfig.from_dict(values, strict=True)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise RunFolderError(f"--out: {str(self.config_path)!r} is damaged ({exc}); restore it, or pass "
                                 f"--overwrite to start the run again") from None

    def check_or_write_config(self, cfg: RunConfig, overwrite: bool = False, num_processes: int = 1,
                              resolve=None) -> None:
        """Refuse a folder that holds a run with other settings (compared after `resolve`, which maps a
        config to what it means on this data, e.g. `--features auto` to lenet), or that is not a run
        folder; write config.json (with the process count, which is recorded but may change on resume)."""
        self.check_is_run_folder()
        saved = None if overwrite else self.check_config(cfg, resolve)
        if saved is not None and saved.generations >= cfg.generations:
            return
        atomic_write_text(self.marker_path, "made by autophagy: --overwrite may delete this folder's contents\n")
        values = {**json.loads(cfg.to_json()), "num_processes": num_processes}
        atomic_write_text(self.config_path, json.dumps(values, indent=2, sort_keys=True) + "\n")

    def check_config(self, cfg: RunConfig, resolve=None) -> RunConfig | None:
        """The saved config (None when there is none), refused when its settings differ from `cfg`'s."""
        saved = self.saved_config()
        if saved is not None:
            diff = config_differences(*map(resolve, (saved, cfg))) if resolve else config_differences(saved, cfg)
            if diff:
                raise ConfigError(f"--out: run folder {str(self.root)!r} holds a run with other settings "
                                  f"({'; '.join(diff)}); pass --overwrite to replace it or choose another --out")
        return saved

    def check_is_run_folder(self) -> None:
        """A folder that holds files is written into only when autophagy made it (its marker, or a run
        folder from before the marker: config.json and metrics.jsonl or gen_000)."""
        if not self.root.exists() or self.marker_path.exists():
            return
        others = [p for p in self.root.iterdir() if p.name != ".lock"]
        legacy = self.config_path.exists() and (self.metrics_path.exists() or self.gen(0).exists())
        if others and not legacy:
            raise RunFolderError(f"--out: {str(self.root)!r} holds files that autophagy did not write "
                                 f"({', '.join(sorted(p.name for p in others)[:3])}); choose an empty or new folder")

    def clear(self) -> None:
        """--overwrite: delete what autophagy wrote here, and only in a folder that autophagy made."""
        self.check_is_run_folder()
        for child in self.root.iterdir():
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    def read_rows(self) -> list[dict]:
        """metrics.jsonl, checked: every line a JSON object with an integer generation."""
        if not self.metrics_path.exists():
            return []
        try:
            return layout.parse_rows(self.metrics_path.read_text(errors="replace"))
        except ValueError as exc:
            raise RunFolderError(f"{str(self.metrics_path)!r} {exc}; delete metrics.jsonl and run the same command "
                                 f"again to rebuild it from the generations' row.json") from None

    def append_row(self, row: dict) -> None:
        """Append a generation's row; a row of the same generation left by an interrupted run is replaced.
        The row is kept in the generation's folder too, so a lost metrics.jsonl can be rebuilt."""
        atomic_write_text(self.row_path(row["generation"]), json.dumps(row) + "\n")
        self.write_rows([r for r in self.read_rows() if r["generation"] != row["generation"]] + [row])

    def write_rows(self, rows: list[dict]) -> None:
        rows = sorted(rows, key=lambda r: r["generation"])
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    def restore_rows(self, log=print) -> None:
        """Check rows against the finished generations: a row missing from metrics.jsonl is restored from
        its generation's row.json (and said); a finished generation with neither is refused by name."""
        if not self.metrics_path.exists() and not self.is_done(0):
            return
        rows = {r["generation"]: r for r in self.read_rows()}
        restored = []
        for t in self.done_generations():
            if t in rows:
                continue
            kept = load_json(self.row_path(t))
            if kept is None or kept.get("generation") != t:
                raise RunFolderError(f"{str(self.gen(t))!r} is finished but its metrics row is lost (not in "
                                     f"metrics.jsonl, no readable row.json); run `autophagy rescore` after removing "
                                     f"{str(self.done_path(t))!r}, or redo it by removing that DONE file")
            rows[t] = kept
            restored.append(t)
        if restored:
            self.write_rows(list(rows.values()))
            log(f"{self.root}: restored the metrics row of generation(s) {restored} from their row.json")

    def mark_done(self, t: int) -> None:
        atomic_write_text(self.done_path(t), "done\n")
        shutil.rmtree(self.work_dir(t), ignore_errors=True)

    def load_health_samples(self, t: int) -> np.ndarray | None:
        """A guided run's unguided health draws of generation t, or None where they were not kept."""
        if not self.health_samples_path(t).exists():
            return None
        return load_npz(self.health_samples_path(t), keys=("images",))["images"]

    def load_samples(self, t: int) -> tuple[np.ndarray, np.ndarray | None]:
        """S_t of a finished generation, checked."""
        if not self.samples_path(t).exists():
            raise RunFolderError(f"{str(self.samples_path(t))!r} is missing though generation {t} is finished; "
                                 f"remove {str(self.done_path(t))!r} and run the same command again to redraw it")
        arrays = load_npz(self.samples_path(t), keys=("images",))
        return arrays["images"], arrays.get("labels")

    def load_scored_samples(self, t: int, n_scored: int) -> np.ndarray:
        """The images generation t was scored on: S_t, then the draws made only to be scored, the first n_scored."""
        images, _ = self.load_samples(t)
        if len(images) < n_scored and self.eval_samples_path(t).exists():
            images = np.concatenate([images, load_npz(self.eval_samples_path(t), keys=("images",))["images"]])
        return images[:n_scored]

    def check_model(self, t: int, name: str = layout.MODEL) -> Path:
        """The saved model folder of a finished generation, or one line naming what is missing."""
        path = self.gen(t) / name
        if not (path / "unet" / "config.json").is_file() or not any((path / "unet").glob("*.safetensors")):
            raise RunFolderError(f"{str(path)!r} (the model of generation {t}) is missing or incomplete; "
                                 f"remove {str(self.gen(t))!r} and run the same command again to retrain it")
        return path


def load_json(path: Path):
    """A JSON file, or None where it is missing or damaged."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def load_npz(path: Path, keys: tuple[str, ...] = (), damaged_ok: bool = False) -> dict | None:
    """The arrays of an .npz file, never unpickled (allow_pickle=False). A damaged file, or one without
    `keys`, is one line naming it (or None with damaged_ok, for a cache that is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise ValueError(f"it has no {', '.join(missing)}")
        return arrays
    except FileNotFoundError:
        if damaged_ok:
            return None
        raise RunFolderError(f"{str(path)!r} is missing") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if damaged_ok:
            return None
        raise RunFolderError(f"{str(path)!r} is damaged ({type(exc).__name__}: {exc}); remove it, and the DONE "
                             f"file of its generation, and run the same command again to redraw it") from None

"""How many threads torch uses, decided by what else autophagy runs on this machine.

Two busy processes that each take every core thrash (measured on 2 cores: one training process 12.3
steps/s; two at torch's default of one thread per core, 1.5 steps/s each; two of one thread each, 8.5
each). So every autophagy process that trains or samples registers itself (a file named by its pid in a
per-user folder of the machine's temporary directory, whatever cache each process uses: the cores are
the machine's) and takes `cores // processes` threads, at least one; it looks again every few training
steps and sampling chunks (`rebalance`), so a run that started alone gives up cores when a second one
starts and takes them back when it ends. An explicit count (`--threads N`) is kept as given.

A run claims for its whole life (`claim`); the engine's training and sampling claim for their own
duration (`engine_claim`), so a notebook, a test or a benchmark that calls them beside a run is counted
too. There a thread count the caller set with torch.set_num_threads is kept, and the count found is
restored afterwards. Processes of other programs are not counted: pass --threads for those.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

_claim: dict = {}   # this process's registration: {"path": Path, "requested": int}
_TORCH_DEFAULT = torch.get_num_threads()   # torch's count when autophagy was imported; another was set by the caller


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def registry() -> Path:
    """$AUTOPHAGY_PROCESSES, else a per-user folder of the machine's temporary directory."""
    return Path(os.environ.get("AUTOPHAGY_PROCESSES")
                or Path(tempfile.gettempdir()) / f"autophagy-{os.getuid()}" / "processes")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def active_processes() -> list[int]:
    """pids of the autophagy processes now registered on this machine (stale entries are removed)."""
    folder = registry()
    pids = []
    for entry in folder.glob("*.pid") if folder.exists() else []:
        try:
            pid = int(entry.stem)
        except ValueError:
            continue
        if _alive(pid):
            pids.append(pid)
        else:
            entry.unlink(missing_ok=True)
    return sorted(pids)


def decide(requested: int, n_processes: int, n_cores: int) -> int:
    """Threads for one process: `requested` when given, else an equal share of the cores (at least 1)."""
    return requested if requested > 0 else max(1, n_cores // max(1, n_processes))


def rebalance() -> int:
    """Set torch's thread count to this process's share now; returns it (a no-op outside `claim`)."""
    if not _claim:
        return torch.get_num_threads()
    # the ranks of one `accelerate launch` count from the start, whenever each registers: a rank's thread
    # count must not depend on which rank got here first (it changes the last bits of its results)
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    n = decide(_claim["requested"], max(local_ranks, len(set(active_processes()) | {os.getpid()})), cores())
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


@contextmanager
def claim(requested: int = 0):
    """Register this process for the duration (nested claims keep the outer one) and set its threads."""
    if _claim:
        yield
        return
    path = registry() / f"{os.getpid()}.pid"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(os.getpid()))
    except OSError:
        path = None   # a read-only cache: no registration, only the explicit count or torch's default
    _claim.update(path=path, requested=requested)
    try:
        rebalance()
        yield
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
        _claim.clear()


@contextmanager
def engine_claim():
    """`claim` around one training or sampling call of the engine, for processes that are not a run (a
    notebook, a test, a benchmark); inside a run's claim it does nothing. A count the caller set with
    torch.set_num_threads is kept; the count found is restored on exit."""
    if _claim:
        yield
        return
    found = torch.get_num_threads()
    try:
        with claim(found if found != _TORCH_DEFAULT else 0):
            yield
    finally:
        torch.set_num_threads(found)

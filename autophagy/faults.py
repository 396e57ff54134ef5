"""Fault injection for the interruption tests: AUTOPHAGY_KILL_AT="point" SIGKILLs this process when
the run reaches that point (e.g. "train:1:0:15" = generation 1, base model, after step 15;
"sample:2:1" = after sample chunk 1 of generation 2; "metrics:0"; "done:1"; "saved:0:0" = right after
generation 0's base model is saved). Unset, it costs one dictionary lookup per call.

AUTOPHAGY_DELAY_RANK="1:0.3" makes process 1 sleep a random 0..0.3 s before every collective (`barrier`),
so a test can show that no rank-dependent look at the disk pairs a barrier with the wrong one (the last
round found such a race only by chance, under load)."""
from __future__ import annotations

import os
import random
import signal
import time


def reached(*point) -> None:
    wanted = os.environ.get("AUTOPHAGY_KILL_AT")
    if wanted and wanted == ":".join(map(str, point)):
        os.kill(os.getpid(), signal.SIGKILL)


def barrier(state) -> None:
    """`state.wait_for_everyone()` (a PartialState or an Accelerator), after the injected delay if any."""
    wanted = os.environ.get("AUTOPHAGY_DELAY_RANK")
    if wanted:
        rank, _, seconds = wanted.partition(":")
        if int(rank) == state.process_index:
            time.sleep(random.uniform(0, float(seconds or 0.3)))
    state.wait_for_everyone()

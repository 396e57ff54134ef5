"""Two processes on the CPU (gloo) through accelerate: both take part, the folder is complete, resume works."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "autophagy"]
ARGS = ["run", "--regime", "sims", "--generations", "2", "--preset", "micro"]


def launch(*args, env=None):
    proc = subprocess.run(LAUNCH + list(map(str, args)), check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})})
    return proc.returncode, proc.stdout + proc.stderr


def rows(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mp") / "run"
    code, log = launch(*ARGS, "--out", out)
    assert code == 0, log[-3000:]
    return out


def test_two_processes_both_take_part(two_process_run):
    out = two_process_run
    assert json.loads((out / "config.json").read_text())["num_processes"] == 2
    assert [r["num_processes"] for r in rows(out)] == [2, 2]
    for t in range(2):
        assert (out / f"gen_{t:03d}" / "DONE").exists() and (out / f"gen_{t:03d}" / "aux_model").is_dir()
        with np.load(out / f"gen_{t:03d}" / "samples.npz") as z:
            images = z["images"]
        assert len(images) == 100  # every chunk once: 2 chunks of 50, one per process
        assert len({im.tobytes() for im in images}) == 100  # no duplicated chunk


def test_two_processes_resume_from_a_checkpoint(two_process_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(two_process_run, out)
    # roll back to after generation 0, kill both processes during generation 1's training, then resume
    shutil.rmtree(out / "gen_001")
    (out / "metrics.jsonl").write_text((out / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    code, log = launch(*ARGS, "--out", out, env={"AUTOPHAGY_KILL_AT": "train:1:0:15"})
    assert code != 0 and not (out / "gen_001" / "DONE").exists()
    assert (out / "gen_001" / "work" / "checkpoints_base" / "step_0000010").is_dir()
    code, log = launch(*ARGS, "--out", out)
    assert code == 0, log[-3000:]
    # generation 1's training bar (30 steps) starts at the checkpoint's step 10, never at 0
    assert "| 10/30 [" in log and "| 0/30 [" not in log
    assert [r["generation"] for r in rows(out)] == [0, 1] and rows(out)[1]["num_processes"] == 2
    assert (out / "gen_001" / "DONE").exists()
    with np.load(out / "gen_001" / "samples.npz") as z:
        assert len({im.tobytes() for im in z["images"]}) == 100


def test_a_late_process_meets_the_same_barriers_when_the_model_appears_meanwhile(micro, tmp_path):
    """Two ranks as threads with a real barrier. The main rank makes and saves the model at once; the
    other arrives after the save. Both must take the same branch: if the late rank saw the fresh save and
    skipped its barrier, the main rank would wait alone and the barrier break (the race that lost a
    sample chunk in a resumed two-process run)."""
    import threading
    import time
    from types import SimpleNamespace

    import torch

    from autophagy.models import build_unet
    from loops.artifacts import saved_model

    cfg = micro()
    barrier = threading.Barrier(2, timeout=20)
    path, results, errors = tmp_path / "model", {}, []

    def rank(index):
        try:
            if index == 1:
                time.sleep(1.0)  # the late process: the main one has saved long before it looks
            state = SimpleNamespace(is_main_process=index == 0, wait_for_everyone=barrier.wait,
                                    device=torch.device("cpu"))
            results[index] = saved_model(state, cfg, path, lambda: build_unet(cfg, 1, 10))
            barrier.wait()  # the next collective step: both ranks must arrive at it together
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(error))

    threads = [threading.Thread(target=rank, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and sorted(results) == [0, 1]
    assert (path / "unet").is_dir()


def test_a_rank_delayed_at_random_before_every_collective_gives_the_same_run(two_process_run, tmp_path):
    """Process 1 sleeps a random 0..0.3 s before every barrier (autophagy.faults.barrier): every
    rank-dependent look at the disk must still pair each barrier with the right one, and the result is
    the undelayed run's, byte for byte."""
    out = tmp_path / "delayed"
    code, log = launch(*ARGS, "--out", out, env={"AUTOPHAGY_DELAY_RANK": "1:0.3"})
    assert code == 0, log[-3000:]
    for t in (0, 1):
        assert (out / f"gen_{t:03d}" / "samples.npz").read_bytes() == \
            (two_process_run / f"gen_{t:03d}" / "samples.npz").read_bytes()

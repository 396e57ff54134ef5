"""The thread decision, by patching what it reads (the cores and the registered processes): no timing."""
import os

import torch

from autophagy import threads


def test_threads_are_an_equal_share_of_the_cores(monkeypatch):
    assert threads.decide(0, 1, 2) == 2 and threads.decide(0, 2, 2) == 1 and threads.decide(0, 3, 2) == 1
    assert threads.decide(0, 2, 16) == 8 and threads.decide(3, 5, 2) == 3   # an explicit count is kept


def test_a_process_gives_up_cores_when_a_second_registers_and_takes_them_back(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOPHAGY_PROCESSES", str(tmp_path / "processes"))
    monkeypatch.setattr(threads, "cores", lambda: 4)
    before = torch.get_num_threads()
    try:
        with threads.claim():
            assert torch.get_num_threads() == 4 and threads.active_processes() == [os.getpid()]
            other = threads.registry() / f"{os.getppid()}.pid"   # a live process: our parent
            other.write_text("x")
            assert threads.rebalance() == 2 and torch.get_num_threads() == 2
            other.unlink()
            assert threads.rebalance() == 4
        assert not (threads.registry() / f"{os.getpid()}.pid").exists()   # unregistered on exit
    finally:
        torch.set_num_threads(before)


def test_a_dead_process_is_not_counted(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOPHAGY_PROCESSES", str(tmp_path / "processes"))
    threads.registry().mkdir(parents=True)
    (threads.registry() / "999999999.pid").write_text("x")
    monkeypatch.setattr(threads, "_alive", lambda pid: pid != 999999999)
    assert threads.active_processes() == []
    assert not (threads.registry() / "999999999.pid").exists()


def test_the_registry_is_the_machines_not_the_caches(monkeypatch, tmp_path):
    """Two processes with different caches (a test suite and a run) still see each other."""
    monkeypatch.delenv("AUTOPHAGY_PROCESSES", raising=False)
    monkeypatch.setenv("AUTOPHAGY_CACHE", str(tmp_path / "a"))
    first = threads.registry()
    monkeypatch.setenv("AUTOPHAGY_CACHE", str(tmp_path / "b"))
    assert threads.registry() == first and not first.is_relative_to(tmp_path)


def _train_one_step(on_step):
    import numpy as np
    from autophagy.config import make_config, validate
    from autophagy.models import build_unet
    from autophagy.training import train_diffusion
    cfg = validate(make_config("micro", checkpoint_every=0))
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (16, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, 16)
    train_diffusion(build_unet(cfg, 1, 10), images, labels, cfg, 1, (0, 0, 0), on_step=on_step)


def test_training_outside_a_run_registers_and_shares_the_cores(monkeypatch, tmp_path):
    """A notebook or test that trains beside a run is counted by both, takes its share while it trains,
    and gets its own thread count back afterwards."""
    monkeypatch.setenv("AUTOPHAGY_PROCESSES", str(tmp_path / "processes"))
    monkeypatch.setattr(threads, "cores", lambda: 4)
    threads.registry().mkdir(parents=True)
    (threads.registry() / f"{os.getppid()}.pid").write_text("x")   # a run beside us: our (live) parent
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_TORCH_DEFAULT", before)   # nobody set a count: the share decides
    seen = []
    try:
        _train_one_step(lambda done, ema: seen.append((threads.active_processes(), torch.get_num_threads())))
        assert seen == [(sorted([os.getpid(), os.getppid()]), 2)]
        assert torch.get_num_threads() == before
        assert threads.active_processes() == [os.getppid()]   # unregistered when training ends
    finally:
        torch.set_num_threads(before)


def test_a_thread_count_the_caller_set_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOPHAGY_PROCESSES", str(tmp_path / "processes"))
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "_TORCH_DEFAULT", 4)
    before = torch.get_num_threads()
    seen = []
    try:
        torch.set_num_threads(3)
        _train_one_step(lambda done, ema: seen.append(torch.get_num_threads()))
        assert seen == [3] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)

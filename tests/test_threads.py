"""The thread decision, by patching what it reads (the cores and the registered processes): no timing."""
import os

import torch

from autophagy import threads


def test_threads_are_an_equal_share_of_the_cores(monkeypatch):
    assert threads.decide(0, 1, 2) == 2 and threads.decide(0, 2, 2) == 1 and threads.decide(0, 3, 2) == 1
    assert threads.decide(0, 2, 16) == 8 and threads.decide(3, 5, 2) == 3   # an explicit count is kept


def test_a_process_gives_up_cores_when_a_second_registers_and_takes_them_back(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOPHAGY_CACHE", str(tmp_path))
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
    monkeypatch.setenv("AUTOPHAGY_CACHE", str(tmp_path))
    threads.registry().mkdir(parents=True)
    (threads.registry() / "999999999.pid").write_text("x")
    monkeypatch.setattr(threads, "_alive", lambda pid: pid != 999999999)
    assert threads.active_processes() == []
    assert not (threads.registry() / "999999999.pid").exists()

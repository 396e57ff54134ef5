"""A micro sweep on Ray: every run finishes with its point's config, generation 0 once per key, resume."""
import json

import pytest

import loops.artifacts as artifacts
from autophagy.config import make_config
from loops.sweep import expand, parse_grid, run_sweep
from tests.conftest import refused, run_cli


def _rows(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    grid = parse_grid(["regime=fully-synthetic,synthetic-augmentation", "learning-rate=0.002,0.003"])
    runs = expand(make_config("micro", generations=3), grid, [0])
    summary = run_sweep(runs, out, workers=2, grid=grid, seeds=[0], log=lambda *_: None)
    return out, runs, summary


def test_a_per_class_setting_is_swept_by_semicolons():
    """A target distribution holds commas itself: its grid values are separated by ';', each a whole
    distribution that validation accepts (split on commas, it would be ten one-number 'distributions')."""
    from autophagy.config import target_probabilities
    grid = parse_grid(["target-distribution=0.5,0.5,0,0,0,0,0,0,0,0;0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1",
                       "guidance-weight=1,2"])
    assert grid["target_distribution"] == ["0.5,0.5,0,0,0,0,0,0,0,0", "0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1"]
    runs = expand(make_config("micro", regime="sims", generations=1), grid, [0])
    assert len(runs) == 4 and [target_probabilities(cfg)[0] for _, cfg in runs].count(0.5) == 2


def test_every_run_finishes_with_its_points_config(swept):
    out, runs, summary = swept
    assert len(runs) == 4 and all(s["state"] == "finished" for s in summary)
    for name, cfg in runs:
        saved = json.loads((out / name / "config.json").read_text())
        assert (saved["regime"], saved["learning_rate"], saved["seed"]) == (cfg.regime, cfg.learning_rate, cfg.seed)
        assert len(_rows(out / name)) == 3 and saved["generations"] == 3
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["executor"] == "ray" and sweep["workers"] == 2 and sweep["seeds"] == [0]
    assert sweep["grid"]["learning_rate"] == [0.002, 0.003]


def test_ray_workers_share_out_generations_not_whole_runs(swept):
    """4 runs on 2 workers: every run's generation 1 is done before any run's last (as whole-run tasks,
    two runs finished before the other two began)."""
    out, runs, _ = swept
    done = {name: [(out / name / f"gen_{t:03d}" / "DONE").stat().st_mtime for t in (1, 2)] for name, _ in runs}
    assert max(first for first, _ in done.values()) < min(last for _, last in done.values())


def test_generation_zero_trained_once_per_key(swept):
    out, runs, _ = swept
    trained = {}
    for name, cfg in runs:
        row0 = _rows(out / name)[0]
        key = (cfg.learning_rate, cfg.seed)  # the regime does not change generation 0
        trained.setdefault(key, []).append("reused_from" not in row0)
    assert all(flags.count(True) == 1 and len(flags) == 2 for flags in trained.values())


def test_rerun_trains_nothing(swept, monkeypatch):
    out, runs, _ = swept
    before = {name: (out / name / "metrics.jsonl").read_bytes() for name, _ in runs}

    def no_training(*a, **k):
        raise AssertionError("a finished sweep must not train again")
    monkeypatch.setattr(artifacts, "train_diffusion", no_training)
    summary = run_sweep(runs, out, workers=1, log=lambda *_: None)
    assert all(s["state"] == "finished" for s in summary)
    assert before == {name: (out / name / "metrics.jsonl").read_bytes() for name, _ in runs}


def test_a_regime_added_to_a_finished_sweep_reuses_its_generation_zero(swept):
    """The new regime comes first in the grid, but the run that already holds generation 0 owns the key."""
    out, _, _ = swept
    grid = parse_grid(["regime=fresh-data,fully-synthetic", "learning-rate=0.002"])
    runs = expand(make_config("micro", generations=2), grid, [0])
    summary = run_sweep(runs, out, workers=1, grid=grid, seeds=[0], log=lambda *_: None)
    assert all(s["state"] == "finished" for s in summary)
    row0, row1 = _rows(out / "fresh-data_learning_rate=0.002-s0")[:2]
    assert row0["reused_from"] == str(out / "fully-synthetic_learning_rate=0.002-s0")
    # the copied row says what the copying run's regime reads, not what the source's did (which is nothing)
    assert row0["uses"] == row1["uses"] and "n_real_fresh" in row0["uses"]
    assert _rows(out / "fully-synthetic_learning_rate=0.002-s0")[0]["uses"] == {}


def test_killed_driver_resumes_to_the_same_rows(tmp_path):
    args = ["sweep", "--grid", "regime=fully-synthetic,synthetic-augmentation", "--generations", "2", "--preset",
            "micro", "--seeds", "0"]
    code, _, err = run_cli(*args, "--out", tmp_path / "whole")
    assert code == 0, err[-2000:]
    code, _, _ = run_cli(*args, "--out", tmp_path / "killed", env={"AUTOPHAGY_KILL_AT": "train:1:0:15"})
    assert code == -9
    code, _, err = run_cli(*args, "--out", tmp_path / "killed")
    assert code == 0, err[-2000:]
    keys = ("fid", "kid", "precision", "recall", "coverage", "memorization", "n_train_real", "n_train_synthetic")
    for name in ("fully-synthetic-s0", "synthetic-augmentation-s0"):
        a, b = _rows(tmp_path / "whole" / name), _rows(tmp_path / "killed" / name)
        assert [{k: r[k] for k in keys} for r in a] == [{k: r[k] for k in keys} for r in b]
    assert (tmp_path / "killed" / "report" / "versus.csv").exists()


def test_bad_grid_is_one_line_exit_2(tmp_path, capsys):
    code, err = refused(capsys, "sweep", "--grid", "nonsense=1,2", "--generations", "1", "--preset", "micro",
                        "--out", tmp_path / "x")
    assert code == 2 and "--grid" in err and "nonsense" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_sampler_only_points_share_generation_zeros_models(tmp_path, monkeypatch):
    """ω only combines θ_0 and the auxiliary model: a sweep over ω trains them once (counted), and each
    point's rows equal those of a separate run."""
    from loops.run import run_loop
    calls = []
    real_train = artifacts.train_diffusion

    def counted(*a, **k):
        calls.append(a[-1])  # the description: which model was trained
        return real_train(*a, **k)
    monkeypatch.setattr(artifacts, "train_diffusion", counted)
    grid = parse_grid(["guidance-weight=1,2,3"])
    runs = expand(make_config("micro", regime="sims", generations=1), grid, [0])
    plain = ("plain-s0", make_config("micro", regime="synthetic-augmentation", generations=1))
    summary = run_sweep(runs + [plain], tmp_path / "sweep", workers=1, grid=grid, seeds=[0], log=lambda *_: None)
    assert all(s["state"] == "finished" for s in summary)
    assert len(calls) == 2   # θ_0 and the auxiliary model, once for three ω and a plain run (not 7 trainings)
    calls.clear()
    alone = run_loop(runs[2][1], tmp_path / "alone", log=lambda *_: None)   # ω = 3 on its own trains both
    assert len(calls) == 2
    mine, separate = _rows(tmp_path / "sweep" / runs[2][0])[0], _rows(alone.root)[0]
    for key in ("fid", "kid", "precision", "recall", "plain_fid", "guidance_weight"):
        assert mine[key] == separate[key], key
    assert _rows(tmp_path / "sweep" / runs[0][0])[0]["fid"] != mine["fid"]   # ω still changes the samples


def test_theta_0_is_trained_once_for_points_that_differ_after_training(tmp_path, monkeypatch):
    """Sampling steps and the evaluation split act after θ_0 is trained: one θ_0 for all four points."""
    calls = []
    real_train = artifacts.train_diffusion
    monkeypatch.setattr(artifacts, "train_diffusion", lambda *a, **k: calls.append(a[-1]) or real_train(*a, **k))
    grid = parse_grid(["sampling-steps=3,4", "evaluate-on=reference,validation"])
    runs = expand(make_config("micro", regime="synthetic-augmentation", generations=1), grid, [0])
    summary = run_sweep(runs, tmp_path / "sweep", workers=1, grid=grid, seeds=[0], log=lambda *_: None)
    assert all(s["state"] == "finished" for s in summary) and len(calls) == 1
    fids = {name: _rows(tmp_path / "sweep" / name)[0]["fid"] for name, _ in runs}
    assert len(set(fids.values())) == 4          # each point still samples and scores as it says


def test_a_run_another_process_holds_is_waited_for_not_failed(tmp_path):
    """Two protocols in one folder share a control run: the second driver waits for the first to let go of
    it, then resumes it (finding its generations finished), instead of marking it failed."""
    import threading
    import time

    from filelock import FileLock
    runs = [("control-s0", make_config("micro", regime="fully-synthetic", generations=1))]
    assert run_sweep(runs, tmp_path, workers=1, log=lambda *_: None)[0]["state"] == "finished"
    rows = (tmp_path / "control-s0" / "metrics.jsonl").read_bytes()
    held = threading.Event()

    def another_process():   # holds the folder's lock for 2 s (its own file descriptor, as a process would)
        with FileLock(str(tmp_path / "control-s0" / ".lock")):
            held.set()
            time.sleep(2.0)
    holder = threading.Thread(target=another_process)
    holder.start()
    held.wait(10)
    lines = []
    summary = run_sweep(runs, tmp_path, workers=1, log=lines.append)
    holder.join()
    assert summary[0]["state"] == "finished", summary
    assert any("in use by another autophagy process; waiting" in line for line in lines)
    assert (tmp_path / "control-s0" / "metrics.jsonl").read_bytes() == rows


def test_a_folder_holding_other_settings_is_refused_before_anything_trains(tmp_path, capsys, monkeypatch):
    """A protocol's new version run into its earlier version's folder (the same run names, other settings):
    one line naming the folder, exit 2, before any run trains, and the earlier run left as it was."""
    import dataclasses

    from autophagy.rundir import RunDir
    calls = []
    monkeypatch.setattr(artifacts, "train_diffusion", lambda *a, **k: calls.append(a[-1]))
    runs = expand(make_config("micro", regime="fully-synthetic", generations=1),
                  parse_grid(["learning-rate=0.002,0.003"]), [0])
    earlier = RunDir(tmp_path / "sweep" / runs[1][0])
    earlier.root.mkdir(parents=True)
    earlier.check_or_write_config(dataclasses.replace(runs[1][1], batch_size=8))
    saved = earlier.config_path.read_bytes()
    code, err = refused(capsys, "sweep", "--grid", "learning-rate=0.002,0.003", "--regime", "fully-synthetic",
                        "--generations", "1", "--preset", "micro", "--out", tmp_path / "sweep")
    assert code == 2 and runs[1][0] in err and "other settings" in err and "batch_size" in err
    assert err.count("\n") == 1
    assert calls == [] and not (tmp_path / "sweep" / runs[0][0]).exists()
    assert earlier.config_path.read_bytes() == saved

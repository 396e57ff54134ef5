"""A run folder is a trust boundary: loading one never runs code, damaged files are named in one line
(exit 2) or rebuilt where that is safe, --overwrite deletes only what autophagy made, and plug-ins that
break the contract are refused by name. Every test here failed on the code before round 3."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autophagy.cli import main
from autophagy.config import ConfigError
from tests.conftest import run_cli

MICRO = ["run", "--regime", "fully-synthetic", "--preset", "micro"]


def cli(capsys, *args) -> tuple[int, str]:
    """main() in-process: (exit code, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-generation micro run (copied by each test that damages it)."""
    out = tmp_path_factory.mktemp("trust") / "run"
    assert main(MICRO + ["--generations", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_copy(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def test_a_pickle_in_a_checkpoint_never_runs(capsys, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "PWNED"
    args = [*MICRO, "--generations", "1", "--out", out]
    code, _, err = run_cli(*args, env={"AUTOPHAGY_KILL_AT": "train:0:0:15"})  # after the step-10 checkpoint
    assert code == -9, err[-1000:]
    checkpoint = next((out / "gen_000" / "work" / "checkpoints_base").glob("step_*"))
    import pickle

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl"):  # the EMA hook, accelerate's RNG state
        (checkpoint / name).write_bytes(pickle.dumps(Payload()))
    code, err = cli(capsys, *args)
    assert not marker.exists()
    assert code == 0 and "damaged" in err, err[-1000:]   # refused as data, retrained from step 0


def test_overwrite_refuses_a_folder_autophagy_did_not_make(capsys, tmp_path):
    theirs = tmp_path / "project"
    (theirs / "src").mkdir(parents=True)
    (theirs / "src" / "main.py").write_text("print('mine')\n")
    (theirs / "README.md").write_text("my project\n")
    (theirs / "config.json").write_text('{"name": "my project"}\n')
    before = snapshot(theirs)
    code, err = cli(capsys, *MICRO, "--generations", "1", "--out", theirs, "--overwrite")
    assert code == 2 and err.count("\n") == 1 and "did not write" in err
    assert snapshot(theirs) == before


def test_overwrite_still_replaces_a_run_folder(capsys, run_copy):
    code, err = cli(capsys, *MICRO, "--generations", "1", "--seed", "3", "--out", run_copy, "--overwrite")
    assert code == 0, err
    assert json.loads((run_copy / "config.json").read_text())["seed"] == 3 and not (run_copy / "gen_001").exists()


def test_rows_are_never_reinterpreted_under_another_config(capsys, run_copy):
    (run_copy / "config.json").unlink()
    before = snapshot(run_copy)
    code, err = cli(capsys, "run", "--regime", "synthetic-augmentation", "--preset", "micro", "--generations", "2",
                    "--out", run_copy)
    assert code == 2 and err.count("\n") == 1 and "config.json" in err
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("damage, expected", [
    (lambda d: (d / "config.json").write_text("{not json"), "config.json"),
    (lambda d: (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()),
                                                           "train_steps": "thirty"})), "train_steps"),
    (lambda d: (d / "metrics.jsonl").write_text((d / "metrics.jsonl").read_text()[:-40]), "metrics.jsonl"),
    (lambda d: (d / "metrics.jsonl").write_text('{"fid": 3.0}\n'), "metrics.jsonl"),
])
def test_a_damaged_file_is_named_in_one_line(capsys, run_copy, damage, expected):
    damage(run_copy)
    before = snapshot(run_copy)
    code, err = cli(capsys, *MICRO, "--generations", "3", "--out", run_copy)
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert "run the same command again to resume" not in err
    assert snapshot(run_copy) == before


def test_truncated_samples_of_a_finished_generation_are_named(capsys, run_copy):
    path = run_copy / "gen_001" / "samples.npz"
    path.write_bytes(path.read_bytes()[:300])
    code, err = cli(capsys, *MICRO, "--generations", "3", "--out", run_copy)  # generation 2 trains on S_1
    assert code == 2 and err.count("\n") == 1 and "gen_001/samples.npz" in err


def test_a_lost_row_is_restored_from_its_generation(capsys, run_copy, finished):
    lines = (run_copy / "metrics.jsonl").read_text().splitlines()
    (run_copy / "metrics.jsonl").write_text(lines[0] + "\n")  # generation 1's row lost
    code, err = cli(capsys, *MICRO, "--generations", "2", "--out", run_copy)
    assert code == 0, err
    assert (run_copy / "metrics.jsonl").read_text() == (finished / "metrics.jsonl").read_text()


def test_a_lost_row_without_its_copy_is_refused_by_generation(capsys, run_copy):
    lines = (run_copy / "metrics.jsonl").read_text().splitlines()
    (run_copy / "metrics.jsonl").write_text(lines[0] + "\n")
    (run_copy / "gen_001" / "row.json").unlink()
    code, err = cli(capsys, *MICRO, "--generations", "3", "--out", run_copy)
    assert code == 2 and err.count("\n") == 1 and "gen_001" in err


def test_a_missing_model_is_named_where_it_is_needed(capsys, tmp_path):
    out = tmp_path / "run"
    args = [*MICRO, "--init", "previous", "--out", out]
    assert cli(capsys, *args, "--generations", "1")[0] == 0
    shutil.rmtree(out / "gen_000" / "model")
    code, err = cli(capsys, *args, "--generations", "2")
    assert code == 2 and err.count("\n") == 1 and "gen_000/model" in err


def test_training_stats_survive_a_kill_right_after_the_model_is_saved(capsys, tmp_path):
    out = tmp_path / "run"
    args = [*MICRO, "--generations", "1", "--out", out]
    code, _, err = run_cli(*args, env={"AUTOPHAGY_KILL_AT": "saved:0:0"})
    assert code == -9, err[-1000:]
    code, err = cli(capsys, *args)
    assert code == 0, err[-1000:]
    row = json.loads((out / "metrics.jsonl").read_text())
    assert np.isfinite(row["ema_decay_effective"]) and np.isfinite(row["train_seconds"])


def test_a_damaged_checkpoint_is_retrained_to_the_same_result(tmp_path):
    args = [*MICRO, "--generations", "1"]
    code, _, err = run_cli(*args, "--out", tmp_path / "reference")   # a process like the killed one
    assert code == 0, err[-1000:]
    out = tmp_path / "damaged"
    code, _, err = run_cli(*args, "--out", out, env={"AUTOPHAGY_KILL_AT": "train:0:0:25"})
    assert code == -9
    checkpoint = next((out / "gen_000" / "work" / "checkpoints_base").glob("step_*"))
    (checkpoint / "optimizer.bin").unlink()
    code, _, err = run_cli(*args, "--out", out)
    assert code == 0 and "damaged" in err, err[-1000:]
    assert (out / "gen_000" / "samples.npz").read_bytes() == (tmp_path / "reference" / "gen_000" / "samples.npz").read_bytes()


def test_sixteen_bit_images_keep_their_grey_levels(tmp_path):
    from autophagy.data import load_image_dataset, to_arrays
    folder = tmp_path / "pngs" / "a"
    folder.mkdir(parents=True)
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)   # 0 .. 63,000 of 65,535
    Image.fromarray(ramp).save(folder / "ramp.png")
    images, _, _ = to_arrays(load_image_dataset(str(tmp_path / "pngs")), 8)
    expected = np.round(ramp / 65535 * 255)
    assert np.abs(images[0, 0].astype(int) - expected).max() <= 2   # not every nonzero pixel at 255
    assert len(np.unique(images)) > 30


@pytest.mark.parametrize("body, expected", [
    ("raise RuntimeError('boom')", "RuntimeError"),
    ("def broken(:\n    pass", "syntax error"),
])
def test_a_broken_plugin_is_one_line(capsys, tmp_path, body, expected):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(body + "\n")
    code, err = cli(capsys, *MICRO, "--generations", "1", "--out", tmp_path / "run", "--plugin", plugin)
    assert code == 2 and err.count("\n") == 1 and expected in err and "bad_plugin.py" in err


def test_an_empty_plugin_name_is_one_line(capsys, tmp_path):
    code, err = cli(capsys, *MICRO, "--generations", "1", "--out", tmp_path / "run", "--plugin", "")
    assert code == 2 and err.count("\n") == 1 and "--plugin" in err


REGIME_PLUGIN = '''
import numpy as np
from loops.regimes import TrainingSet, register_regime

def build(t, draws):
    return {body}

register_regime("{name}", build)
'''


@pytest.mark.parametrize("name, body, expected", [
    ("reference-leak", "TrainingSet(np.setdiff1d(np.arange(len(draws.pool) + 400), draws.pool)[:13], (t - 1,))",
     "outside the training pool"),
    ("negative", "TrainingSet(np.array([-1, -2]), (t - 1,))", "outside the training pool"),
    ("a-list", "TrainingSet(list(draws.draw(0)), (t - 1,))", "numpy array"),
    ("too-far", "TrainingSet(draws.draw(0), (t - 1,), {t - 1: np.array([0, 10**6])})", "outside S_"),
    ("future", "TrainingSet(draws.draw(0), (t,))", "generation"),
])
def test_a_plugin_regime_can_never_train_on_what_is_not_in_the_pool(capsys, tmp_path, name, body, expected):
    plugin = tmp_path / f"{name.replace('-', '_')}.py"
    plugin.write_text(REGIME_PLUGIN.format(body=body, name=name))
    out = tmp_path / "run"
    code, err = cli(capsys, "run", "--regime", name, "--preset", "micro", "--generations", "2", "--out", out,
                    "--plugin", plugin)
    assert code == 2 and err.count("\n") == 1 and expected in err and repr(name) in err, err
    assert (out / "gen_000" / "DONE").exists() and not (out / "gen_001" / "model").exists()


def test_report_refuses_what_is_not_a_run_before_any_work(capsys, run_copy, tmp_path):
    (tmp_path / "empty").mkdir()
    code, err = cli(capsys, "report", tmp_path / "empty")
    assert code == 2 and err.count("\n") == 1 and "config.json" in err
    (run_copy / "metrics.jsonl").write_text("")
    code, err = cli(capsys, "report", run_copy)
    assert code == 2 and err.count("\n") == 1 and "no finished generation" in err


@pytest.mark.parametrize("grid, expected", [
    ("guidance-weight=1,1.0", "more than once"),
    ("preset=micro,cpu", "preset"),
])
def test_sweep_grids_that_cannot_mean_what_they_say_are_refused(capsys, tmp_path, grid, expected):
    code, err = cli(capsys, "sweep", "--preset", "micro", "--regime", "sims", "--generations", "1",
                    "--grid", grid, "--out", tmp_path / "sweep")
    assert code == 2 and err.count("\n") == 1 and expected in err
    assert not (tmp_path / "sweep").exists()


def test_every_sweep_folder_lies_inside_out(micro, tmp_path):
    from loops.sweep import expand, parse_grid
    runs = expand(micro(), parse_grid(["data=../../x,/etc/y"]), [0])
    for name, _ in runs:
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_a_training_set_checked_directly():
    from loops.regimes import TrainingSet, check_training_set
    pool = np.arange(10, 20)
    check_training_set("ok", 1, TrainingSet(np.array([10, 19]), (0,), {0: np.array([0, 4])}), pool, lambda g: 5)
    with pytest.raises(ConfigError, match="outside S_0"):
        check_training_set("bad", 1, TrainingSet(np.array([10]), (0,), {0: np.array([5])}), pool, lambda g: 5)


def test_a_damaged_reference_cache_is_rebuilt(capsys, run_copy, finished):
    (run_copy / "reference_features.npz").write_bytes(b"not an npz")
    code, err = cli(capsys, *MICRO, "--generations", "3", "--out", run_copy)
    assert code == 0, err
    with np.load(run_copy / "reference_features.npz") as a, np.load(finished / "reference_features.npz") as b:
        assert np.array_equal(a["features"], b["features"])
    rows = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == [0, 1, 2]

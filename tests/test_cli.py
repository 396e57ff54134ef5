"""Bad input: one line naming the value, exit code 2, no traceback, nothing in the run folder changed.
Also the config guard, extending --generations, the lock and the NaN stop."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import autophagy.training as training
from autophagy.cli import main
from autophagy.rundir import RunDir
from tests.conftest import ROOT

MICRO = ["run", "--regime", "fully-synthetic", "--generations", "2", "--preset", "micro"]


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(MICRO + ["--out", str(out)]) == 0
    return out


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


BAD = [  # (arguments after `run --preset micro --out RUN`, text the one-line error must contain)
    (["--regime", "nope", "--generations", "2"], "'nope'"),
    (["--regime", "sims", "--generations", "0"], "0"),
    (["--regime", "sims", "--generations", "-1"], "-1"),
    (["--regime", "sims", "--generations", "abc"], "'abc'"),
    (["--regime", "sims", "--generations", "2", "--seed", "-1"], "-1"),
    (["--regime", "sims", "--generations", "2", "--data", "/nonexistent/dir"], "/nonexistent/dir"),
    (["--regime", "sims", "--generations", "2", "--n-real", "0"], "--n-real"),
    (["--regime", "sims", "--generations", "2", "--n-synthetic", "-5"], "-5"),
    (["--regime", "sims", "--generations", "2", "--n-reference", "0"], "--n-reference"),
    (["--regime", "sims", "--generations", "2", "--n-real-fresh", "-1"], "-1"),
    (["--regime", "sims", "--generations", "2", "--guidance-weight", "-1"], "-1"),
    (["--regime", "sims", "--generations", "2", "--guidance-weight", "nan"], "nan"),
    (["--regime", "sims", "--generations", "2", "--sampling-bias", "0"], "--sampling-bias"),
    (["--regime", "sims", "--generations", "2", "--sampling-bias", "1.5"], "1.5"),
    (["--regime", "sims", "--generations", "2", "--conditioning", "maybe"], "'maybe'"),
    (["--regime", "sims", "--generations", "2", "--features", "resnet"], "'resnet'"),
    (["--regime", "sims", "--generations", "2", "--sampler", "fancy"], "'fancy'"),
    (["--regime", "sims", "--generations", "2", "--k", "0"], "--k"),
    (["--regime", "sims", "--generations", "2", "--init", "random"], "'random'"),
    (["--regime", "sims", "--generations", "2", "--train-steps", "0"], "--train-steps"),
    (["--regime", "sims", "--generations", "2", "--batch-size", "0"], "--batch-size"),
    (["--regime", "sims", "--generations", "2", "--sampling-steps", "0"], "--sampling-steps"),
    (["--regime", "sims", "--generations", "2", "--prediction-type", "x0"], "'x0'"),
    (["--regime", "sims", "--generations", "2", "--mixed-precision", "fp8"], "'fp8'"),
    (["--regime", "sims", "--generations", "2", "--resolution", "7"], "7"),
    (["--regime", "sims", "--generations", "2", "--learning-rate", "5"], "5"),
    (["--regime", "sims", "--generations", "2", "--ema-decay", "1.5"], "1.5"),
    (["--regime", "sims", "--generations", "2", "--label-dropout", "1"], "--label-dropout"),
    (["--regime", "sims", "--generations", "2", "--n-aux", "0"], "--n-aux"),
    (["--regime", "sims", "--generations", "2", "--block-out-channels", "8,x"], "'8,x'"),
    (["--regime", "sims", "--generations", "2", "--n-real", "100000"], "100000"),
    (["--regime", "fresh-data", "--generations", "50", "--n-real-fresh", "200"], "needs"),
    (["--regime", "sims", "--generations", "2", "--inception-weights", "/nonexistent.pt"], "/nonexistent.pt"),
    (["--regime", "sims", "--generations", "2", "--data", "digits", "--n-reference", "1797"], "1797"),
    (["--regime", "fully-synthetic", "--generations", "2", "--n-synthetic", "150"], "n_synthetic"),  # config guard
    (["--regime", "fully-synthetic", "--generations", "2", "--bogus-flag", "1"], "--bogus-flag"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a[2:] or a) for a, _ in BAD])
def test_bad_invocation_is_one_line_exit_2_and_changes_nothing(existing_run, capsys, args, needle):
    before = snapshot(existing_run)
    with pytest.raises(SystemExit) as exc:
        main(["run", "--preset", "micro", "--out", str(existing_run), *args])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert err.startswith("autophagy: error: ") and len(err.splitlines()) == 1, err
    assert needle in err and "Traceback" not in err
    assert snapshot(existing_run) == before


@pytest.mark.parametrize("argv,needle", [
    (["compare", "--regimes", "fully-synthetic,bogus", "--generations", "2", "--preset", "micro"], "'bogus'"),
    (["compare", "--regimes", "sims", "--generations", "2", "--seeds", "a,b"], "'a,b'"),
    (["report", "/nonexistent/run"], "/nonexistent/run"),
])
def test_bad_compare_and_report(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and needle in err


def test_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(MICRO + ["--out", str(tmp_path / "f")])
    assert exc.value.code == 2 and "is not a directory" in capsys.readouterr().err


def test_bad_input_in_a_real_process_has_no_traceback():
    """The console entry point itself (`python -m autophagy`), started the plain way."""
    proc = subprocess.run([sys.executable, "-m", "autophagy", "run", "--regime", "sims", "--generations", "2",
                           "--sampling-bias", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    code, err = proc.returncode, proc.stderr
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "Traceback" not in err and "2.0" in err


def test_extending_generations_continues(existing_run):
    samples = (existing_run / "gen_001" / "samples.npz").read_bytes()
    assert main(MICRO[:4] + ["3", "--preset", "micro", "--out", str(existing_run)]) == 0
    rows = RunDir(existing_run).read_rows()
    assert [r["generation"] for r in rows] == [0, 1, 2]
    assert (existing_run / "gen_001" / "samples.npz").read_bytes() == samples
    assert json.loads((existing_run / "config.json").read_text())["generations"] == 3


def test_overwrite_replaces_a_run_with_other_settings(tmp_path):
    out = tmp_path / "run"
    assert main(MICRO + ["--out", str(out), "--generations", "1"]) == 0
    assert main(MICRO + ["--out", str(out), "--generations", "1", "--n-synthetic", "60", "--overwrite"]) == 0
    assert RunDir(out).read_rows()[0]["n_generated"] == 60


def test_lock_refuses_a_second_writer(tmp_path, capsys):
    out = tmp_path / "run"
    with RunDir(out).locked():
        with pytest.raises(SystemExit) as exc:
            main(MICRO + ["--out", str(out)])
    assert exc.value.code == 2 and "in use by another autophagy process" in capsys.readouterr().err


def test_nan_loss_stops_with_exit_1_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(MICRO + ["--out", str(out), "--generations", "1"]) == 0
    gen0 = snapshot(out / "gen_000")
    real_mse, calls = training.F.mse_loss, {"n": 0}

    def exploding(pred, target, **kwargs):
        calls["n"] += 1
        loss = real_mse(pred, target, **kwargs)
        return loss * float("nan") if calls["n"] > 15 else loss  # gen 1 diverges after step 15
    monkeypatch.setattr(training.F, "mse_loss", exploding)
    assert main(MICRO + ["--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "gen 1 train: loss is nan at step 20" in err and "run the same command again" in err
    assert snapshot(out / "gen_000") == gen0 and not (out / "gen_001" / "DONE").exists()
    assert (out / "gen_001" / "work" / "checkpoints_base" / "step_0000010").is_dir()  # the last good checkpoint
    # the rerun takes a different path past the bad step: the retry number joins the batch seeds
    assert "retry 1" in err
    assert json.loads((out / "gen_001" / "work" / "checkpoints_base" / "retries.json").read_text()) == {"retries": 1}
    from autophagy.seeding import seed_for
    assert seed_for(0, "train", 1, 0, 10, 0) != seed_for(0, "train", 1, 0, 10, 0, 1)
    monkeypatch.setattr(training.F, "mse_loss", real_mse)
    assert main(MICRO + ["--out", str(out)]) == 0
    assert [r["generation"] for r in RunDir(out).read_rows()] == [0, 1]


def _commands():
    import argparse
    from autophagy.cli import build_parser
    commands = []
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                commands.append([name])
                commands += [[name, inner] for a in sub._actions if isinstance(a, argparse._SubParsersAction)
                             for inner in a.choices]
    return commands


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_help_page_prints(command, capsys):
    """A field's help with a % sign ("1.75 % of train_steps") once broke `run --help` with a traceback."""
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0 and "usage: autophagy" in capsys.readouterr().out

"""Plug-ins: a file from a temporary folder registers a regime and a sampler that a real run uses."""
import json
import textwrap

import pytest

from tests.conftest import ROOT, run_cli

PLUGIN = textwrap.dedent('''
    import numpy as np
    from loops.regimes import TrainingSet, register_regime
    from loops.samplers import SamplerSetup, register_sampler

    def quarter_real(t, draws):
        r0 = draws.draw(0)
        return TrainingSet(r0[: len(r0) // 4], (t - 1,))

    def plain_twice(ctx, base):   # a sampler of its own: plain sampling, marked guided
        return SamplerSetup(ctx.denoiser(base), guided=True, sample_nfe=7)

    register_regime("quarter-real", quarter_real, sampler="plain-twice", description="a test plug-in")
    register_sampler("plain-twice", plain_twice, description="a test plug-in")
''')


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "plugs" / "my_method.py"
    path.parent.mkdir()
    path.write_text(PLUGIN)
    return path


def test_plugin_regime_and_sampler_run_and_are_required_on_rerun(plugin_file, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--regime", "quarter-real", "--generations", "2", "--preset", "micro", "--out", out]
    code, _, err = run_cli(*args, "--plugin", plugin_file)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_train_real"] for r in rows] == [200, 50]  # R_0, then a quarter of it
    assert rows[1]["n_train_synthetic"] == 100 and rows[1]["sampler"] == "plain-twice"
    assert "plain_fid" in rows[1]  # a guided sampler: the model's plain samples are scored too
    assert rows[1]["cost_sample_nfe"] == 100 * 4 + 7
    assert json.loads((out / "config.json").read_text())["plugins"] == [str(plugin_file)]
    before = (out / "metrics.jsonl").read_bytes()
    code, _, err = run_cli(*args)  # without the plug-in
    assert code == 2 and err.count("\n") == 1 and "--plugin" in err and str(plugin_file) in err
    assert (out / "metrics.jsonl").read_bytes() == before


def test_a_name_clash_is_refused(tmp_path):
    clash = tmp_path / "clash.py"
    clash.write_text("from loops.regimes import register_regime, TrainingSet\n"
                     "register_regime('sims', lambda t, d: TrainingSet(d.draw(0), (t - 1,)))\n")
    code, _, err = run_cli("run", "--regime", "sims", "--generations", "1", "--preset", "micro",
                           "--out", tmp_path / "r", "--plugin", clash)
    assert code == 2 and "'sims' is already registered" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_the_example_plugin_runs(tmp_path):
    code, _, err = run_cli("run", "--regime", "half-real", "--sampler", "low-temperature", "--generations", "2",
                           "--preset", "micro", "--out", tmp_path / "ex", "--plugin", ROOT / "examples" / "plugin_half_real.py")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "ex" / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["n_train_real"] == 100 and rows[1]["sampler"] == "low-temperature"

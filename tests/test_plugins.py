"""Plug-ins: a file from a temporary folder registers a regime and a sampler that a real run uses."""
import json
import textwrap

import pytest

from tests.conftest import ROOT, refused, run_cli

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


def test_plugin_regime_and_sampler_run_and_are_required_on_rerun(plugin_file, tmp_path, capsys):
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
    code, err = refused(capsys, *args)  # without the plug-in (this process never loaded it)
    assert code == 2 and err.count("\n") == 1 and "--plugin" in err and str(plugin_file) in err
    assert (out / "metrics.jsonl").read_bytes() == before


def test_a_name_clash_is_refused(tmp_path, capsys):
    clash = tmp_path / "clash.py"
    clash.write_text("from loops.regimes import register_regime, TrainingSet\n"
                     "register_regime('sims', lambda t, d: TrainingSet(d.draw(0), (t - 1,)))\n")
    code, err = refused(capsys, "run", "--regime", "sims", "--generations", "1", "--preset", "micro",
                        "--out", tmp_path / "r", "--plugin", clash)
    assert code == 2 and "'sims' is already registered" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_a_plugin_regime_sweeps_on_ray_workers_and_rescores(tmp_path, capsys):
    """The example plug-in (a regime and a sampler) is imported in every Ray worker (a fresh process), and
    rescore takes it with --plugin."""
    out = tmp_path / "sweep"
    code, _, err = run_cli("sweep", "--preset", "micro", "--plugin", "examples/plugin_half_real.py",
                           "--grid", "regime=half-real,fully-synthetic", "--sampler", "low-temperature",
                           "--seeds", "0", "--generations", "2", "--workers", "2", "--out", out, timeout=600)
    assert code == 0, err[-2000:]
    rows = [json.loads(line) for line in (out / "half-real-s0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_train_real"] for r in rows] == [200, 100] and rows[1]["sampler"] == "low-temperature"
    code, err = refused(capsys, "rescore", out / "half-real-s0")   # this process never loaded the plug-in
    assert code == 2 and "--plugin" in err and err.count("\n") == 1
    code, _, err = run_cli("rescore", out / "half-real-s0", "--plugin", "examples/plugin_half_real.py")
    assert code == 0, err[-2000:]


USES_PLUGIN = '''
from loops.samplers import SamplerSetup, register_sampler

def tempered(ctx, base):   # reads guidance_weight as its own knob
    return SamplerSetup(ctx.denoiser(base), guided=True)

register_sampler("tempered", tempered, uses=("guidance_weight",), description="a test plug-in")
'''


def test_a_plugin_sampler_that_declares_uses_gets_its_labels_and_generation_zero_key(micro, tmp_path):
    from autophagy.plugins import load_plugin
    from loops.generation_zero import generation_zero_key
    plugin = tmp_path / "tempered_plugin.py"
    plugin.write_text(USES_PLUGIN)
    load_plugin(str(plugin))
    a = micro(regime="synthetic-augmentation", sampler="tempered", guidance_weight=1.0)
    b = micro(regime="synthetic-augmentation", sampler="tempered", guidance_weight=3.0)
    plain = micro(regime="synthetic-augmentation", guidance_weight=1.0)
    plain_other = micro(regime="synthetic-augmentation", guidance_weight=3.0)
    assert generation_zero_key(a) != generation_zero_key(b)             # its field changes its generation 0
    assert generation_zero_key(plain) == generation_zero_key(plain_other)  # a field plain sampling never reads

    from analysis.experiments import label_experiments
    from analysis.load import load_runs
    from loops.run import run_loop
    folders = [run_loop(cfg, tmp_path / name, log=lambda *_: None).root
               for name, cfg in (("t1", a), ("t3", b), ("control", plain))]
    rows = json.loads((folders[0] / "metrics.jsonl").read_text().splitlines()[0])
    assert rows["uses"] == {"guidance_weight": 1.0} and rows["guidance_weight"] == 1.0
    labels = sorted(label_experiments(load_runs(folders))["experiment"].unique())
    assert labels == ["sampler=plain", "ω=1.0 sampler=tempered", "ω=3.0 sampler=tempered"]

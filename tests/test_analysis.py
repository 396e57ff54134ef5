"""analysis/ reads run folders with pandas and never imports torch or loops."""
import subprocess
import sys

import numpy as np
import pandas as pd

from analysis.report import comparison_table


def test_analysis_imports_neither_torch_nor_loops():
    code = ("import sys, analysis.load, analysis.plots, analysis.report; "
            "bad = [m for m in ('torch', 'loops', 'diffusers') if m in sys.modules]; print(bad); assert not bad")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_comparison_table_ratios_per_seed():
    df = pd.DataFrame({"regime": ["a"] * 4, "seed": [0, 0, 1, 1], "generation": [0, 2, 0, 2],
                       "fid": [10.0, 30.0, 20.0, 20.0]})
    row = comparison_table(df, metrics=("fid",)).iloc[0]
    assert row.gen0_mean == 15 and row.last_mean == 25 and row.last_generation == 2
    assert row.ratio_mean == 2.0 and np.isclose(row.ratio_std, np.std([3.0, 1.0], ddof=1))
    # ratios 3 and 1: mean 2, standard error 1, Student t(0.975, 1 dof) = 12.706 from the tables
    assert np.isclose(row.ratio_ci95_low, 2 - 12.7062, atol=1e-3)
    assert np.isclose(row.ratio_ci95_high, 2 + 12.7062, atol=1e-3)
    one_seed = comparison_table(df[df.seed == 0], metrics=("fid",)).iloc[0]
    assert one_seed.ratio_mean == 3.0 and np.isnan(one_seed.ratio_ci95_low)


def test_every_module_imports_only_downward_and_no_cycle():
    """Walks every module of the three packages (pkgutil): the engine (every autophagy module but the CLI,
    the composition root) imports neither loops nor analysis; loops never imports analysis; analysis
    imports no torch and no loops (autophagy.layout only); and no two modules import each other."""
    import ast
    import importlib.util
    import pkgutil
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    imports = {}
    for package in ("autophagy", "loops", "analysis"):
        for info in pkgutil.walk_packages([str(root / package)], prefix=f"{package}."):
            path = Path(importlib.util.find_spec(info.name).origin)
            names = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names.add(node.module)
            imports[info.name] = names
    assert len(imports) > 30
    for module, names in imports.items():
        tops = {n.split(".")[0] for n in names}
        if module.startswith("autophagy.") and module not in ("autophagy.cli", "autophagy.__main__"):
            assert not tops & {"loops", "analysis"}, module
        if module.startswith("loops."):
            assert "analysis" not in tops, module
        if module.startswith("analysis."):
            assert not tops & {"torch", "loops", "diffusers"}, module
            assert {n for n in names if n.startswith("autophagy")} <= {"autophagy.layout"}, module
    graph = {m: names & set(imports) for m, names in imports.items()}
    state = {}

    def visit(module, path):  # depth-first search: a module met again on its own path closes a cycle
        state[module] = "open"
        for other in graph[module]:
            assert state.get(other) != "open", "import cycle: " + " -> ".join(path + [other])
            if other not in state:
                visit(other, path + [other])
        state[module] = "done"
    for module in graph:
        if module not in state:
            visit(module, [module])


def _run(folder, seed, rows, **cfg):
    """A run folder written by hand: config.json and metrics.jsonl."""
    import json
    folder.mkdir(parents=True)
    config = {"regime": "sims", "sampler": "", "guidance_weight": 2.0, "k": 3, "features": "lenet", "seed": seed,
              "generations": len(rows), **cfg}
    (folder / "config.json").write_text(json.dumps(config))
    from autophagy.config import make_config
    from loops.regimes import REGIMES, method_fields, sampler_of
    real = make_config("cpu", regime=config["regime"], sampler=config["sampler"])  # what the registrations say
    uses = {f: config.get(f, getattr(real, f)) for f in method_fields(real)}
    base = {"regime": config["regime"], "sampler": sampler_of(real), "seed": seed, "k": config["k"],
            "feature_space": "lenet", "feature_id": "abc", "n_reference": 100, "evaluated_on": "reference",
            "uses": uses, "own_sampler": REGIMES[config["regime"]].sampler or "plain",
            "control": REGIMES[config["regime"]].control}
    (folder / "metrics.jsonl").write_text("".join(json.dumps({**base, "generation": g, "fid": v, "recall": 0.5}) + "\n"
                                                  for g, v in enumerate(rows)))
    return folder


def test_a_generation_zero_copied_from_another_regime_keeps_its_runs_experiment(tmp_path):
    """Two fresh-data runs that differ only in n_real_fresh, whose generation 0 was copied from a
    fully-synthetic run by a sweep before 2026-12-06 (its row says it reads no field): read as the engine
    reads them, they are two experiments, not one with six rows a generation."""
    import json
    from analysis.experiments import label_experiments
    from analysis.load import load_runs
    from autophagy.cli import _reading
    runs = [_run(tmp_path / f"fresh{n}-s0", 0, [5.0, 9.0, 12.0], regime="fresh-data", n_real_fresh=n) for n in (111, 250)]
    for run in runs:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rows[0].update(uses={}, reused_from=str(tmp_path / "fully-synthetic-s0"))
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = label_experiments(load_runs(runs, _reading()))
    labels = df.groupby("run")["experiment"].agg(set)
    assert labels["fresh111-s0"] == {"n_real_fresh=111"} and labels["fresh250-s0"] == {"n_real_fresh=250"}


def test_folders_of_other_preset_versions_are_read_as_their_methods_read_them(tmp_path):
    """Synthetic-augmentation folders of a preset that had Neon's w = 4 and no n_eval or finetune_epochs
    field, and of today's (w = 2, n_eval = n_synthetic = 1,000, finetune_epochs = 0, the field's default):
    no synthetic-augmentation run reads w, and both scored all 1,000 images, so with the engine's reading
    they are one experiment and a fully-synthetic run is labelled by its regime alone; read raw, the
    same folders split into experiments labelled by settings no run reads."""
    from analysis.experiments import label_experiments
    from analysis.load import load_runs
    from autophagy.cli import _reading
    runs = [_run(tmp_path / f"old-s{s}", s, [5.0, 9.0], regime="synthetic-augmentation", neon_weight=4.0,
                 n_synthetic=1000) for s in (0, 1)]
    runs += [_run(tmp_path / f"new-s{s}", s, [5.0, 8.0], regime="synthetic-augmentation", neon_weight=2.0,
                  n_synthetic=1000, n_eval=1000, finetune_epochs=0.0) for s in (2, 3)]
    runs += [_run(tmp_path / "fully-s0", 0, [5.0, 20.0], regime="fully-synthetic", neon_weight=2.0,
                  n_synthetic=1000, n_eval=1000, finetune_epochs=0.0)]
    read = label_experiments(load_runs(runs, _reading()))
    assert sorted(read["experiment"].unique()) == ["fully-synthetic", "synthetic-augmentation"]
    assert sorted(read[read.experiment == "synthetic-augmentation"]["seed"].unique()) == [0, 1, 2, 3]
    raw = label_experiments(load_runs(runs))
    labels = raw[raw.cfg_regime == "synthetic-augmentation"]["experiment"].unique()
    assert len(labels) == 2 and all("w=" in label for label in labels)


def test_runs_differing_only_in_omega_are_two_experiments_and_paired_by_hand(tmp_path):
    """Two ω on three shared seeds: the per-seed differences of the last FID are 1, 2, 6; mean 3,
    sem = sqrt(7)/sqrt(3), t(0.975, 2) = 4.3027 (tables), paired t = 3 / sem; with 2 degrees of freedom
    the two-sided p-value has the closed form 1 − t / sqrt(t² + 2)."""
    from analysis.experiments import label_experiments
    from analysis.load import load_runs
    from analysis.report import versus_table
    runs = []
    for seed, (a, b) in enumerate([(10.0, 9.0), (12.0, 10.0), (16.0, 10.0)]):
        runs.append(_run(tmp_path / f"w1-s{seed}", seed, [5.0, a], guidance_weight=1.0))
        runs.append(_run(tmp_path / f"w2-s{seed}", seed, [5.0, b], guidance_weight=2.0))
    df = label_experiments(load_runs(runs))
    assert sorted(df["experiment"].unique()) == ["ω=1.0", "ω=2.0"]
    versus = versus_table(df, baseline="ω=2.0", metrics=("fid",))
    last = versus[versus.quantity == "last"].iloc[0]
    assert last.experiment == "ω=1.0" and last.n_seeds == 3 and last.mean_difference == 3.0
    half_width = 4.3027 * np.sqrt(7 / 3)
    assert np.isclose(last.ci95_low, 3 - half_width, atol=1e-3) and np.isclose(last.ci95_high, 3 + half_width, atol=1e-3)
    t = 3 / np.sqrt(7 / 3)
    assert np.isclose(last.p_value, 1 - t / np.sqrt(t * t + 2), rtol=1e-9)


def test_a_field_left_empty_in_one_experiment_is_labelled_as_off(tmp_path):
    """A per-class field set in one experiment and empty (off) in the other reads `∅`, not `name=`."""
    from analysis.experiments import label_experiments
    from analysis.load import load_runs
    runs = [_run(tmp_path / "balanced", 0, [5.0], class_weights=""),
            _run(tmp_path / "imbalanced", 0, [6.0], class_weights="4,4,1,1,1,1,1,1,1,1")]
    assert sorted(label_experiments(load_runs(runs))["experiment"].unique()) == [
        "class_weights=4,4,1,1,1,1,1,1,1,1", "class_weights=∅"]


def test_different_k_is_refused_and_a_missing_seed_is_named(tmp_path):
    import pytest

    from analysis.experiments import ReportError
    from analysis.report import write_report
    a = _run(tmp_path / "a", 0, [5.0, 6.0])
    b = _run(tmp_path / "b", 0, [5.0, 6.0], k=5, guidance_weight=1.0)
    with pytest.raises(ReportError, match=r"k \(k\) takes 3, 5"):
        write_report([a, b], tmp_path / "rep")
    c = _run(tmp_path / "c", 1, [5.0, 7.0])
    short = _run(tmp_path / "d", 2, [5.0], generations=2)  # seed 2 stopped after generation 0
    import json
    cfg = json.loads((short / "config.json").read_text())
    cfg["generations"] = 2
    (short / "config.json").write_text(json.dumps(cfg))
    out = write_report([a, c, short], tmp_path / "rep2")
    assert "Seeds left out" in (out / "comparison.md").read_text() and "sims: 2" in (out / "comparison.md").read_text()
    table = pd.read_csv(out / "comparison.csv")
    assert (table.n_seeds == 2).all()


def test_report_cli_refuses_mixed_instruments_with_exit_2(tmp_path, capsys):
    from tests.conftest import refused
    a = _run(tmp_path / "a", 0, [5.0, 6.0])
    b = _run(tmp_path / "b", 0, [5.0, 6.0], k=5)
    code, err = refused(capsys, "report", a, b, "--out", tmp_path / "rep")
    assert code == 2 and "k (k)" in err and err.count("\n") == 1


def test_model_health_is_paired_with_the_unguided_controls_own_samples(tmp_path):
    import json

    from analysis.experiments import label_experiments
    from analysis.load import load_runs
    from analysis.report import versus_table
    runs = []
    for seed, (control, health) in enumerate([(20.0, 15.0), (22.0, 20.0)]):
        runs.append(_run(tmp_path / f"c-s{seed}", seed, [5.0, control], regime="synthetic-augmentation"))
        guided = _run(tmp_path / f"s-s{seed}", seed, [5.0, 9.0])
        rows = [json.loads(line) for line in (guided / "metrics.jsonl").read_text().splitlines()]
        (guided / "metrics.jsonl").write_text("".join(json.dumps({**r, "plain_fid": [5.0, health][r["generation"]]}) + "\n"
                                                      for r in rows))
        runs.append(guided)
    df = label_experiments(load_runs(runs))
    versus = versus_table(df, metrics=("fid", "plain_fid"))
    row = versus[(versus.metric == "plain_fid") & (versus.quantity == "last")].iloc[0]
    assert row.experiment == "sims" and row.baseline == "synthetic-augmentation" and row.baseline_metric == "fid"
    assert row.mean_difference == ((15 - 20) + (20 - 22)) / 2


def test_report_at_a_generation_compares_a_longer_run_with_a_shorter_one(tmp_path, capsys):
    """ω=1 ran 2 generations, ω=2 was extended to 4: by default each is reported at its own last
    generation and the report says they differ; `--generation 1` reports both at generation 1."""
    from analysis.report import write_report
    from autophagy.cli import main
    from tests.conftest import refused
    short = [_run(tmp_path / f"w1-s{s}", s, [5.0, 8.0 + s], guidance_weight=1.0) for s in (0, 1)]
    long = [_run(tmp_path / f"w2-s{s}", s, [5.0, 6.0 + s, 30.0, 40.0]) for s in (0, 1)]
    table = pd.read_csv(write_report(short + long, tmp_path / "all") / "comparison.csv")
    fid = table[table.metric == "fid"].set_index("experiment")
    assert fid.loc["ω=2.0", "last_generation"] == 3 and fid.loc["ω=2.0", "last_mean"] == 40.0
    assert "--generation" in (tmp_path / "all" / "comparison.md").read_text()
    assert main(["report", *map(str, short + long), "--generation", "1", "--out", str(tmp_path / "at1")]) == 0
    fid = pd.read_csv(tmp_path / "at1" / "comparison.csv").query("metric == 'fid'").set_index("experiment")
    assert (fid["last_generation"] == 1).all() and (fid["n_seeds"] == 2).all()
    assert fid.loc["ω=2.0", "last_mean"] == 6.5 and fid.loc["ω=1.0", "last_mean"] == 8.5
    assert "--generation" not in (tmp_path / "at1" / "comparison.md").read_text()
    versus = pd.read_csv(tmp_path / "at1" / "versus.csv").query("metric == 'fid' and quantity == 'last'")
    assert versus["mean_difference"].abs().iloc[0] == 2.0
    code, err = refused(capsys, "report", *short, "--generation", "-1", "--out", tmp_path / "bad")
    assert code == 2 and "--generation" in err and err.count("\n") == 1


def test_a_setting_a_run_does_not_use_stays_out_of_its_label_unless_labels_would_clash(tmp_path):
    from analysis.experiments import label_experiments
    from analysis.load import load_runs
    sims = _run(tmp_path / "sims", 0, [5.0, 6.0], guidance_weight=1.0)
    control = _run(tmp_path / "control", 0, [5.0, 7.0], regime="synthetic-augmentation")
    df = label_experiments(load_runs([sims, control]))
    assert sorted(df["experiment"].unique()) == ["sims ω=1.0", "synthetic-augmentation"]
    other = _run(tmp_path / "control2", 0, [5.0, 8.0], regime="synthetic-augmentation", guidance_weight=1.0)
    df = label_experiments(load_runs([sims, control, other]))
    assert sorted(df["experiment"].unique()) == ["sims ω=1.0", "synthetic-augmentation ω=1.0",
                                                 "synthetic-augmentation ω=2.0"]


def test_settings_that_measure_alike_are_one_experiment(tmp_path):
    """`--features auto` that resolved to lenet and an explicit `--features lenet` measured the same way,
    and the tracker (`log_with`) changes no result: one experiment, not two."""
    import json

    from analysis.experiments import label_experiments
    from analysis.load import load_runs
    a = _run(tmp_path / "a", 0, [5.0, 6.0], features="auto", log_with="tensorboard")
    b = _run(tmp_path / "b", 1, [5.0, 7.0])
    assert json.loads((a / "config.json").read_text())["features"] == "auto"
    assert label_experiments(load_runs([a, b]))["experiment"].nunique() == 1


def test_a_report_of_one_experiment_has_a_readable_empty_versus_table(tmp_path):
    from analysis.report import write_report
    out = write_report([_run(tmp_path / f"a-s{s}", s, [5.0, 6.0 + s]) for s in (0, 1)], tmp_path / "rep")
    versus = pd.read_csv(out / "versus.csv")
    assert len(versus) == 0 and {"experiment", "baseline", "p_value", "generation"} <= set(versus.columns)


def test_a_ratio_every_seed_agrees_on_has_a_point_interval_without_a_warning():
    import warnings
    from analysis.report import ratio_interval
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # scipy's "invalid value encountered in multiply" on a zero spread
        assert ratio_interval(pd.Series([1.0, 1.0, 1.0])) == (1.0, 1.0)
        low, high = ratio_interval(pd.Series([1.0, 2.0, 3.0]))
    assert low < 2.0 < high and np.isnan(ratio_interval(pd.Series([2.0]))).all()


def test_a_one_generation_report_draws_each_seed_as_a_point_not_a_curve():
    """A one-generation protocol (the distribution-shift ones) has no curve to draw: each experiment is a
    mean with a ± std bar and one dot per seed; a longer report keeps its curves."""
    import matplotlib.pyplot as plt

    from analysis.plots import plot_curves
    rows = [{"experiment": e, "seed": s, "generation": 0, "fid": 10.0 * (e == "b") + s, "sampler": "plain"}
            for e in "ab" for s in range(3)]
    fig = plot_curves(pd.DataFrame(rows), metrics=["fid"])
    ax = fig.axes[0]
    dots = [c for c in ax.collections if len(c.get_offsets()) == 3]
    assert len(dots) == 2   # one scatter of three seeds per experiment
    assert sorted(dots[1].get_offsets()[:, 1]) == [10.0, 11.0, 12.0]
    assert ax.get_xlabel() == "generation 0" and not list(ax.get_xticks())
    plt.close(fig)
    longer = pd.DataFrame([{**r, "generation": g} for r in rows for g in range(2)])
    fig = plot_curves(longer, metrics=["fid"])
    assert fig.axes[0].get_xlabel() == "generation" and len(fig.axes[0].lines) == 2
    plt.close(fig)

"""A micro compare of three regimes x two seeds, its report, generation 0 trained once, the notebook."""
import os

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

import loops.artifacts as artifacts
from autophagy.config import make_config
from loops.compare import run_compare
from tests.conftest import ROOT

REGIMES = ["fully-synthetic", "fresh-data", "sims"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    calls = []
    real_train = artifacts.train_diffusion

    def counting(model, images, labels, cfg, steps, seed_ints, *a, **k):
        calls.append((cfg.regime, *seed_ints))
        return real_train(model, images, labels, cfg, steps, seed_ints, *a, **k)
    mp = pytest.MonkeyPatch()
    mp.setattr(artifacts, "train_diffusion", counting)
    configs = [make_config("micro", regime=r, generations=2, seed=s, n_real_fresh=50) for r in REGIMES for s in (0, 1)]
    from analysis.report import write_report
    report = write_report(run_compare(configs, out, log=lambda *_: None), out / "report")
    mp.undo()
    return out, report, calls


def test_report_files_and_table(compared):
    out, report, _ = compared
    for name in ("comparison.csv", "comparison.md", "versus.csv", "curves.png", "samples.png"):
        assert (report / name).stat().st_size > 100, name
    table = pd.read_csv(report / "comparison.csv")
    fid = table[table.metric == "fid"].set_index("experiment")
    assert sorted(fid.index) == sorted(REGIMES) and (fid.n_seeds == 2).all()
    versus = pd.read_csv(report / "versus.csv")
    sims = versus[(versus.experiment == "sims") & (versus.metric == "fid") & (versus.quantity == "last")].iloc[0]
    assert sims.baseline == "fully-synthetic" and sims.n_seeds == 2 and 0 <= sims.p_value <= 1
    assert np.isfinite(fid[["gen0_mean", "last_mean", "ratio_mean", "ratio_std"]].to_numpy()).all()
    md = (report / "comparison.md").read_text()
    assert all(f"| {r} |" in md for r in REGIMES) and "Real vs real" in md


def test_generation_zero_trained_once_per_key(compared):
    out, _, calls = compared
    gen0_base = sorted((regime, seed) for regime, seed, gen, role in calls if gen == 0 and role == 0)
    # fresh-data shares fully-synthetic's generation 0; sims draws S_0 with its own sampler, from the same
    # θ_0: it gets a copy of the model instead of training it again
    assert gen0_base == [("fully-synthetic", 0), ("fully-synthetic", 1)]
    for seed in (0, 1):
        a = (out / f"fully-synthetic-s{seed}" / "gen_000" / "samples.npz").read_bytes()
        assert (out / f"fresh-data-s{seed}" / "gen_000" / "samples.npz").read_bytes() == a
        weights = "gen_000/model/unet/diffusion_pytorch_model.safetensors"
        assert (out / f"sims-s{seed}" / weights).read_bytes() == (out / f"fully-synthetic-s{seed}" / weights).read_bytes()
        assert (out / f"sims-s{seed}" / "gen_000" / "samples.npz").read_bytes() != a


def test_rerun_resumes_without_training(compared, monkeypatch):
    out, _, _ = compared
    monkeypatch.setattr(artifacts, "train_diffusion", lambda *a, **k: pytest.fail("trained again"))
    configs = [make_config("micro", regime=r, generations=2, seed=s, n_real_fresh=50) for r in REGIMES for s in (0, 1)]
    run_compare(configs, out, log=lambda *_: None)


def test_notebook_executes(compared):
    out, _, _ = compared
    nb = nbformat.read(ROOT / "notebooks" / "compare_regimes.ipynb", as_version=4)
    os.environ["AUTOPHAGY_RUNS"] = str(out / "*-s*")
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        del os.environ["AUTOPHAGY_RUNS"]
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the curves and the sample grid


def test_report_command_on_existing_runs(compared, tmp_path):
    from autophagy.cli import main
    out, _, _ = compared
    assert main(["report", *[str(out / f"{r}-s0") for r in REGIMES], "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "curves.png").exists()

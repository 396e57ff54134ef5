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


def test_engine_knows_nothing_about_loops():
    code = ("import sys, autophagy.config, autophagy.data, autophagy.training, autophagy.sampling, "
            "autophagy.features, autophagy.metrics, autophagy.rundir; assert 'loops' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0

"""The comparison report of a set of run folders: comparison.csv/.md, curves.png, samples.png."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis.load import METRICS, load_baselines, load_runs
from analysis.plots import plot_curves, plot_sample_grid


def comparison_table(df: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Per regime and metric: mean ± std across seeds at generation 0 and at the last generation,
    and the per-seed ratio last/first (mean ± std, and its 95 % Student-t interval over seeds)."""
    rows = []
    for regime, group in df.groupby("regime", sort=False):
        last = group["generation"].max()
        per_seed = group.pivot_table(index="seed", columns="generation", values=[m for m in metrics if m in group])
        for metric in [m for m in metrics if m in group]:
            first_values = per_seed[(metric, 0)] if (metric, 0) in per_seed else pd.Series(dtype=float)
            last_values = per_seed[(metric, last)]
            ratio = last_values / first_values.replace(0, np.nan)
            low, high = ratio_interval(ratio.dropna())
            rows.append({
                "regime": regime, "metric": metric, "n_seeds": len(last_values), "last_generation": int(last),
                "gen0_mean": first_values.mean(), "gen0_std": first_values.std(ddof=1) if len(first_values) > 1 else 0.0,
                "last_mean": last_values.mean(), "last_std": last_values.std(ddof=1) if len(last_values) > 1 else 0.0,
                "ratio_mean": ratio.mean(), "ratio_std": ratio.std(ddof=1) if len(ratio) > 1 else 0.0,
                "ratio_ci95_low": low, "ratio_ci95_high": high,
            })
    return pd.DataFrame(rows)


def ratio_interval(ratios: pd.Series, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean ratio over seeds; NaN with fewer than two seeds."""
    if len(ratios) < 2:
        return np.nan, np.nan
    return stats.t.interval(level, len(ratios) - 1, loc=ratios.mean(), scale=stats.sem(ratios))


def table_markdown(table: pd.DataFrame) -> str:
    """One row per regime, one column per metric: 'gen0 → last (×ratio [95 % interval])', mean ± std over seeds."""
    def cell(r):
        interval = f" [{r.ratio_ci95_low:.2f}, {r.ratio_ci95_high:.2f}]" if np.isfinite(r.ratio_ci95_low) else ""
        return (f"{r.gen0_mean:.3g}±{r.gen0_std:.2g} → {r.last_mean:.3g}±{r.last_std:.2g} "
                f"(×{r.ratio_mean:.2f}{interval})")
    wide = table.assign(cell=table.apply(cell, axis=1)).pivot(index="regime", columns="metric", values="cell")
    wide = wide[[m for m in METRICS if m in wide.columns]]
    header = "| regime | " + " | ".join(wide.columns) + " |\n|---|" + "---|" * len(wide.columns) + "\n"
    body = "".join(f"| {regime} | " + " | ".join(row) + " |\n" for regime, row in wide.iterrows())
    return header + body


def write_report(run_dirs, out) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = load_runs(run_dirs)
    baselines = load_baselines(run_dirs)
    table = comparison_table(df)
    table.to_csv(out / "comparison.csv", index=False)
    seeds = ", ".join(map(str, sorted(df["seed"].unique())))
    text = (f"# Comparison\n\nEach cell: metric at generation 0 → at the last generation, mean ± std over seeds "
            f"{seeds}; in brackets the ratio last/first, mean over seeds [95 % Student-t interval]; "
            f"{df['feature_space'].iloc[0]} features, k = {df['k'].iloc[0]}.\n\n"
            + table_markdown(table))
    if len(baselines):
        floor = ", ".join(f"{m} {baselines[m].mean():.3g}" for m in METRICS if m in baselines)
        text += f"\nReal vs real (training pool vs reference): {floor}.\n"
    (out / "comparison.md").write_text(text)
    plot_curves(df, baselines).savefig(out / "curves.png", dpi=120)
    plot_sample_grid(df).savefig(out / "samples.png", dpi=120)
    import matplotlib.pyplot as plt
    plt.close("all")
    return out

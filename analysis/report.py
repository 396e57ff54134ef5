"""The comparison report of a set of run folders: comparison.csv/.md, versus.csv, curves.png, samples.png.

Runs are grouped into experiments by their whole config except the seed (analysis.experiments); only
seeds that reached the last generation count. `versus.csv` pairs every experiment with a baseline
on the seeds they share: per-seed differences at the last generation and of the gen-0 → last ratio,
their mean with a 95 % Student-t interval, and the paired t-test's p-value (scipy.stats.ttest_rel).
The t interval assumes the per-seed differences are roughly normal; with 3 seeds nothing better is
checkable, and a bootstrap over 3 seeds has only 10 distinct resamples.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis.experiments import check_instruments, complete_seeds, control_of, label_experiments
from analysis.load import METRICS, Reading, load_baselines, load_runs
from analysis.plots import plot_curves, plot_sample_grid


def comparison_table(df: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Per experiment and metric: mean ± std across seeds at generation 0 and at the last generation,
    and the per-seed ratio last/first (mean ± std, and its 95 % Student-t interval over seeds)."""
    rows = []
    key = "experiment" if "experiment" in df.columns else "regime"
    for regime, group in df.groupby(key, sort=False):
        last = group["generation"].max()
        present = [m for m in metrics if m in group and group.loc[group["generation"] == last, m].notna().any()]
        per_seed = group.pivot_table(index="seed", columns="generation", values=present)
        for metric in present:
            first_values = per_seed[(metric, 0)] if (metric, 0) in per_seed else pd.Series(dtype=float)
            last_values = per_seed[(metric, last)]
            ratio = last_values / first_values.replace(0, np.nan)
            low, high = ratio_interval(ratio.dropna())
            rows.append({
                "experiment": regime, "regime": group["regime"].iloc[0], "metric": metric, "n_seeds": len(last_values), "last_generation": int(last),
                "gen0_mean": first_values.mean(), "gen0_std": first_values.std(ddof=1) if len(first_values) > 1 else 0.0,
                "last_mean": last_values.mean(), "last_std": last_values.std(ddof=1) if len(last_values) > 1 else 0.0,
                "ratio_mean": ratio.mean(), "ratio_std": ratio.std(ddof=1) if len(ratio) > 1 else 0.0,
                "ratio_ci95_low": low, "ratio_ci95_high": high,
            })
    return pd.DataFrame(rows)


def interval(values: pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval over seeds; NaN bounds with fewer than two."""
    values = values.dropna()
    mean = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    if values.std(ddof=1) == 0:
        return mean, mean, mean
    low, high = stats.t.interval(level, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)


def ratio_interval(ratios: pd.Series, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean ratio over the seeds that have one (as the mean is); NaN with fewer
    than two, the mean itself when every seed agrees (no scipy warning on a zero spread)."""
    _, low, high = interval(ratios, level)
    return low, high


def per_seed(df: pd.DataFrame, experiment: str, metric: str) -> pd.DataFrame:
    """{seed: (first, last, ratio)} of one experiment and metric."""
    group = df[df["experiment"] == experiment]
    last = group["generation"].max()
    wide = group.pivot_table(index="seed", columns="generation", values=metric, dropna=False)
    first = wide[0] if 0 in wide.columns else pd.Series(np.nan, index=wide.index)
    final = wide[last] if last in wide.columns else pd.Series(np.nan, index=wide.index)
    return pd.DataFrame({"first": first, "last": final, "ratio": final / first.replace(0, np.nan)})


def paired_difference(a: pd.Series, b: pd.Series, level: float = 0.95) -> dict:
    """Mean of a − b over the shared index (seeds), its Student-t interval and the paired t-test p-value."""
    shared = a.index.intersection(b.index)
    d = (a[shared] - b[shared]).dropna()
    out = {"n_seeds": len(d), "seeds": ",".join(str(int(s)) for s in d.index), "mean_difference": d.mean(),
           "ci95_low": np.nan, "ci95_high": np.nan, "p_value": np.nan}
    if len(d) >= 2:
        if d.std(ddof=1) > 0:
            out["ci95_low"], out["ci95_high"] = stats.t.interval(level, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
            out["p_value"] = float(stats.ttest_rel(a[d.index], b[d.index]).pvalue)
        else:
            out["ci95_low"] = out["ci95_high"] = d.mean()
    return out


VERSUS_COLUMNS = ["experiment", "baseline", "metric", "quantity", "baseline_metric", "generation", "baseline_generation",
                  "experiment_mean", "baseline_mean", "n_seeds", "seeds", "mean_difference", "ci95_low", "ci95_high",
                  "p_value"]


def versus_table(df: pd.DataFrame, baseline: str | None = None, metrics=METRICS) -> pd.DataFrame:
    """Every experiment against its baseline on shared seeds: one row per pair, metric and quantity
    (value at the last generation, ratio last/first). Baseline: `baseline` when given, else each
    mitigation's unmitigated control when the runs hold one, else the first experiment. A guided
    experiment's plain_* (its models' own unguided samples) is paired with an unguided baseline's
    metric itself, since that baseline's samples are plain draws: model health against model health."""
    experiments = list(dict.fromkeys(df["experiment"]))
    ends = df.groupby("experiment")["generation"].max()
    rows = []
    for experiment in experiments:
        base = baseline or control_of(df, experiment) or experiments[0]
        if base == experiment:
            continue
        for metric in [m for m in metrics if m in df.columns]:
            base_metric = metric
            if metric.startswith("plain_") and df.loc[df["experiment"] == base, metric].isna().all():
                base_metric = metric.removeprefix("plain_")  # an unguided baseline's own samples are plain draws
            if df.loc[df["experiment"] == experiment, metric].isna().all() or base_metric not in df.columns \
                    or df.loc[df["experiment"] == base, base_metric].isna().all():
                continue
            a, b = per_seed(df, experiment, metric), per_seed(df, base, base_metric)
            for quantity in ("last", "ratio"):
                rows.append({"experiment": experiment, "baseline": base, "metric": metric, "quantity": quantity,
                             "baseline_metric": base_metric, "generation": ends[experiment],
                             "baseline_generation": ends[base],
                             "experiment_mean": a[quantity].mean(), "baseline_mean": b[quantity].mean(),
                             **paired_difference(a[quantity], b[quantity])})
    return pd.DataFrame(rows, columns=VERSUS_COLUMNS)  # the header even with one experiment: a readable CSV


def cost_table(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Per experiment: mean compute per generation (images through the optimiser, network evaluations x
    images sampled) and each relative to its baseline (a mitigation's unmitigated control by default)."""
    if "cost_train_images" not in df.columns:
        return pd.DataFrame()
    experiments = list(dict.fromkeys(df["experiment"]))
    means = df.groupby("experiment")[["cost_train_images", "cost_sample_nfe"]].mean()
    rows = []
    for experiment in experiments:
        base = baseline or control_of(df, experiment) or experiment
        rows.append({"experiment": experiment, "baseline": base,
                     "train_images_per_generation": means.loc[experiment, "cost_train_images"],
                     "sample_nfe_per_generation": means.loc[experiment, "cost_sample_nfe"],
                     "train_relative": means.loc[experiment, "cost_train_images"] / means.loc[base, "cost_train_images"],
                     "sample_relative": means.loc[experiment, "cost_sample_nfe"] / means.loc[base, "cost_sample_nfe"]})
    return pd.DataFrame(rows)


def table_markdown(table: pd.DataFrame) -> str:
    """One row per regime, one column per metric: 'gen0 → last (×ratio [95 % interval])', mean ± std over seeds."""
    def cell(r):
        interval = f" [{r.ratio_ci95_low:.2f}, {r.ratio_ci95_high:.2f}]" if np.isfinite(r.ratio_ci95_low) else ""
        return (f"{r.gen0_mean:.3g}±{r.gen0_std:.2g} → {r.last_mean:.3g}±{r.last_std:.2g} "
                f"(×{r.ratio_mean:.2f}{interval})")
    key = "experiment" if "experiment" in table.columns else "regime"
    wide = table.assign(cell=table.apply(cell, axis=1)).pivot(index=key, columns="metric", values="cell").fillna("–")
    wide = wide.reindex(list(dict.fromkeys(table[key])))[[m for m in METRICS if m in wide.columns]]
    header = f"| {key} | " + " | ".join(wide.columns) + " |\n|---|" + "---|" * len(wide.columns) + "\n"
    body = "".join(f"| {regime} | " + " | ".join(row) + " |\n" for regime, row in wide.iterrows())
    return header + body


def versus_markdown(versus: pd.DataFrame, metrics=("fid", "recall", "coverage", "plain_fid")) -> str:
    rows = versus[versus["metric"].isin(metrics)] if len(versus) else versus
    if not len(rows):
        return ""
    text = ("\n## Paired by seed (experiment − baseline)\n\n| experiment | baseline | metric | quantity | "
            "difference [95 % t interval] | p (paired t) | seeds |\n|---|---|---|---|---|---|---|\n")
    for r in rows.itertuples():
        interval = f" [{r.ci95_low:.3g}, {r.ci95_high:.3g}]" if np.isfinite(r.ci95_low) else ""
        p = f"{r.p_value:.3g}" if np.isfinite(r.p_value) else "–"
        text += (f"| {r.experiment} | {r.baseline} | {r.metric} | {r.quantity} | {r.mean_difference:+.3g}{interval} "
                 f"| {p} | {r.seeds} |\n")
    return text


def write_report(run_dirs, out, baseline: str | None = None, generation: int | None = None,
                 reading: Reading | None = None) -> Path:
    """comparison.csv/.md, versus.csv, curves.png and samples.png of the run folders into `out`; with
    `generation`, every experiment is reported at that generation (later ones are left out), so runs
    extended to more generations can still be compared with shorter ones; `reading`: how to read the
    configs of other preset versions (analysis.load.Reading)."""
    out = Path(out)
    df = label_experiments(load_runs(run_dirs, reading))
    check_instruments(df)
    df, missing = complete_seeds(df, generation)
    if not len(df):
        from analysis.experiments import ReportError
        raise ReportError("report: no experiment has a seed that reached "
                          + ("its last generation" if generation is None else f"generation {generation}"))
    if baseline is not None and baseline not in set(df["experiment"]):
        from analysis.experiments import ReportError
        raise ReportError(f"--baseline: {baseline!r} is not an experiment; choose one of "
                          f"{', '.join(dict.fromkeys(df['experiment']))}")
    out.mkdir(parents=True, exist_ok=True)
    baselines = load_baselines(run_dirs)
    table = comparison_table(df)
    table.to_csv(out / "comparison.csv", index=False)
    versus = versus_table(df, baseline)
    versus.to_csv(out / "versus.csv", index=False)
    seeds = ", ".join(map(str, sorted(df["seed"].unique())))
    text = (f"# Comparison\n\nEach cell: metric at generation 0 → at the last generation, mean ± std over seeds "
            f"{seeds}; in brackets the ratio last/first, mean over seeds [95 % Student-t interval]; "
            f"{df['feature_space'].iloc[0]} features, k = {df['k'].iloc[0]}.\n\n"
            + table_markdown(table))
    if missing:
        reached = "the last generation" if generation is None else f"generation {generation}"
        text += f"\nSeeds left out (they did not reach {reached}): " + "; ".join(
            f"{e}: {', '.join(map(str, s))}" for e, s in missing.items()) + ".\n"
    ends = df.groupby("experiment", sort=False)["generation"].max()
    if ends.nunique() > 1:
        text += ("\nThe experiments end at different generations (" + ", ".join(f"{e}: {g}" for e, g in ends.items())
                 + "), and the tables compare each at its own last one; `autophagy report --generation G` compares "
                 "them all at generation G.\n")
    text += versus_markdown(versus)
    costs = cost_table(df, baseline)
    if len(costs):
        costs.to_csv(out / "costs.csv", index=False)
        text += ("\n## Compute per generation, relative to the baseline\n\n| experiment | baseline | training images "
                 "| × | sampling NFE × images | × |\n|---|---|---|---|---|---|\n" + "".join(
                     f"| {r.experiment} | {r.baseline} | {r.train_images_per_generation:,.0f} | {r.train_relative:.2f} "
                     f"| {r.sample_nfe_per_generation:,.0f} | {r.sample_relative:.2f} |\n" for r in costs.itertuples()))
    if len(baselines):
        floor = ", ".join(f"{m} {baselines[m].mean():.3g}" for m in METRICS if m in baselines)
        text += f"\nReal vs real (training pool vs reference): {floor}.\n"
    (out / "comparison.md").write_text(text)
    save_png(plot_curves(df, baselines), out / "curves.png")
    save_png(plot_sample_grid(df), out / "samples.png")
    import matplotlib.pyplot as plt
    plt.close("all")
    return out


def save_png(figure, path: Path, dpi: int = 120) -> None:
    """The figure as a 256-colour PNG: a third of the size of matplotlib's RGBA for the curves, so
    reports committed under docs/ stay small."""
    import io

    from PIL import Image
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")  # a legend of long labels stays whole
    Image.open(buffer).convert("RGB").quantize(256).save(path, optimize=True)

"""Figures: metric curves per regime with a seed band, and a regimes x generations sample grid."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.load import METRICS, load_samples

BOUNDS = {"precision": (0, 1), "recall": (0, 1), "coverage": (0, 1), "density": (0, None), "fid": (0, None),
          "classes_covered": (0, None)}  # a ± std band is clipped to the range the metric can take
LABELS = {"fid": "FID ↓", "kid": "KID ↓", "memorization": "memorization ↓", "plain_fid": "FID of θ_t's unguided samples ↓",
          "plain_recall": "recall, unguided samples ↑", "plain_coverage": "coverage, unguided samples ↑", "precision": "precision ↑", "recall": "recall ↑", "density": "density",
          "coverage": "coverage ↑", "classes_covered": "classes covered ↑"}


def plot_curves(df: pd.DataFrame, baselines: pd.DataFrame | None = None, metrics=METRICS):
    """One panel per metric: mean over seeds per experiment, band = mean ± std across seeds (only
    where an experiment has two seeds or more), the real-vs-real floor (mean over runs) dashed."""
    from matplotlib.ticker import MaxNLocator
    key = "experiment" if "experiment" in df.columns else "regime"
    metrics = [m for m in metrics if m in df.columns and df[m].notna().any()]
    ncols = 3
    nrows = int(np.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    n_seeds = df.groupby(key)["seed"].nunique()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {e: cycle[i % len(cycle)] for i, e in enumerate(dict.fromkeys(df[key]))}  # one colour per experiment
    one_generation = df["generation"].nunique() == 1  # a one-generation protocol: points, not curves
    for ax, metric in zip(axes.flat, metrics):
        for position, (regime, group) in enumerate(df.groupby(key, sort=False)):
            column = metric
            if metric.startswith("plain_") and group[metric].isna().all() and (group.get("sampler") == "plain").all():
                column = metric.removeprefix("plain_")  # an unguided loop's own samples are plain draws of θ_t
            if one_generation:
                _seed_points(ax, group[column].dropna(), position, regime, colours[regime])
                continue
            stats = group.groupby("generation")[column].agg(["mean", "std"])
            if stats["mean"].isna().all():
                continue
            line, = ax.plot(stats.index, stats["mean"], marker="o", ms=3, label=regime, color=colours[regime])
            if n_seeds[regime] >= 2:
                low, high = BOUNDS.get(metric, (None, None))
                band = (stats["mean"] - stats["std"]).clip(lower=low), (stats["mean"] + stats["std"]).clip(upper=high)
                ax.fill_between(stats.index, *band, color=line.get_color(), alpha=0.2)
        if one_generation:
            ax.set_xticks([])
            ax.set_xlim(-0.6, len(colours) - 0.4)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if baselines is not None and metric in baselines.columns and len(baselines):
            ax.axhline(baselines[metric].mean(), color="k", ls="--", lw=1, label="real vs real")
        ax.set_xlabel(f"generation {df['generation'].iloc[0]}" if one_generation else "generation")
        ax.set_title(LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:  # every experiment once, whichever panel drew it
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    seeds_text = f"{n_seeds.min()}" if n_seeds.min() == n_seeds.max() else f"{n_seeds.min()}–{n_seeds.max()}"
    if one_generation:
        title = f"dots: each of {seeds_text} seed(s); marker and bar: mean ± 1 std across seeds"
    else:
        band_text = "; band: ± 1 std across seeds" if n_seeds.max() >= 2 else " (one seed: no band)"
        title = f"line: mean over {seeds_text} seed(s){band_text}"
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4 if not one_generation else 1),
               frameon=False, title=title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def _seed_points(ax, values: pd.Series, position: int, label: str, colour) -> None:
    """One experiment of a one-generation report at x = `position`: every seed's value as a dot beside
    the mean, with a ± 1 std bar where there are two seeds or more."""
    if values.empty:
        return
    offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
    ax.scatter(position + 0.25 + offsets, values, s=12, color=colour, alpha=0.6, zorder=3)
    std = values.std() if len(values) >= 2 else None
    ax.errorbar(position, values.mean(), yerr=std, fmt="o", ms=6, capsize=4, color=colour, label=label, zorder=4)


def _tile(images: np.ndarray, side: int) -> np.ndarray:
    """side x side images as one (H, W) or (H, W, 3) array."""
    n, c, h, w = images.shape
    canvas = np.full((c, side * h, side * w), 255, dtype=np.uint8)
    for i, img in enumerate(images[: side * side]):
        r, q = divmod(i, side)
        canvas[:, r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    return canvas[0] if c == 1 else canvas.transpose(1, 2, 0)


def plot_sample_grid(df: pd.DataFrame, side: int = 4, generations=None, seed=None):
    """Rows = experiments, columns = generations; each cell shows side x side samples of one seed."""
    key = "experiment" if "experiment" in df.columns else "regime"
    seed = df["seed"].min() if seed is None else seed
    runs = df[df["seed"] == seed].groupby(key, sort=False)["run_dir"].first()
    generations = sorted(df["generation"].unique()) if generations is None else generations
    fig, axes = plt.subplots(len(runs), len(generations), figsize=(1.3 * len(generations), 1.4 * len(runs)),
                             squeeze=False)
    for row, (regime, run_dir) in enumerate(runs.items()):
        for col, g in enumerate(generations):
            ax = axes[row, col]
            ax.set_xticks([]), ax.set_yticks([])
            try:
                ax.imshow(_tile(load_samples(run_dir, g, side * side), side), cmap="gray", vmin=0, vmax=255)
            except FileNotFoundError:
                pass
            if row == 0:
                ax.set_title(f"gen {g}", fontsize=8)
            if col == 0:
                ax.set_ylabel(regime, fontsize=8)
    fig.suptitle(f"samples per generation (seed {seed})", fontsize=9)
    fig.tight_layout()
    return fig

"""Validation FID against CPU seconds per generation: which training and sampling settings buy the most
model quality per second. Tuned on the VALIDATION split only, never on the reference set.

    python benchmarks/frontier.py --variants "" "loss_weighting=min_snr" "batch_size=128,learning_rate=3e-3" \
        --snapshots 250,500,1000,1500 --samplers ddim:10,ddim:25,dpmsolver:10,unipc:10 --out docs/frontier

Each variant trains generation 0 of the `cpu` preset (the loop's own trainer, seeds and data) once, up to
the largest snapshot; with a constant learning rate and EMA decay, the EMA weights after s steps are
exactly those of a run of s steps, so every snapshot is a run of that length. At each snapshot the EMA
model draws `n_synthetic` images with every sampler and is scored on the validation split. One JSON row
per (variant, snapshot, sampler) is appended to OUT/frontier.jsonl (a rerun skips what is there), and
OUT/frontier.png plots FID against train + sample seconds, the cost of one fully-synthetic generation.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from autophagy import hardware
from autophagy.config import RunConfig, make_config
from autophagy.data import load_real_data
from autophagy.features import build_extractor
from autophagy.metrics import compute_metrics, gaussian_stats, knn_radii
from autophagy.models import build_unet
from autophagy.sampling import GuidedDenoiser, sample_chunks
from autophagy.seeding import seed_for
from autophagy.training import train_diffusion
from loops.regimes import RealDraws


def parse_variant(text: str) -> dict:
    """'batch_size=64,learning_rate=2e-3' -> typed overrides of RunConfig fields."""
    types = {f.name: str(f.type) for f in RunConfig.__dataclass_fields__.values()}
    values = {}
    for item in filter(None, text.split(",")):
        name, value = item.split("=")
        if types[name] == "tuple":
            values[name] = tuple(int(v) for v in value.split("/"))
            continue
        values[name] = {"int": int, "float": float, "str": str, "bool": lambda v: v.lower() in ("1", "true")}[types[name]](value)
    return values


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=[""], help="FIELD=VALUE,... overrides of the cpu preset "
                   "(tuples with /, e.g. block_out_channels=16/32/32)")
    p.add_argument("--snapshots", default="250,500,1000,1500", help="training steps to evaluate at")
    p.add_argument("--samplers", default="ddim:10,ddim:25,dpmsolver:10,unipc:10", help="scheduler:steps[:spacing]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--plot-samplers", default="unipc:10,ddim:10", help="the samplers the figure draws a line for")
    p.add_argument("--out", type=Path, default=Path("docs/frontier"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = hardware.describe()
    print(machine, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "frontier.jsonl"
    done = {(r["variant"], r["seed"]) for r in map(json.loads, log_path.read_text().splitlines())} if log_path.exists() else set()
    snapshots = sorted(int(s) for s in args.snapshots.split(","))
    samplers = [s.split(":") for s in args.samplers.split(",")]
    for text in args.variants:
        if (text, args.seed) in done:
            continue
        cfg = make_config("cpu", regime="fully-synthetic", generations=1, seed=args.seed, evaluate_on="validation",
                          train_steps=snapshots[-1], **parse_variant(text))
        real = load_real_data(cfg.data, cfg.resolution, cfg.n_reference, cfg.n_validation)
        extractor = build_extractor(dataclasses_replace(cfg, features="lenet"), real)
        reference = extractor(real.images[real.evaluation("validation")])
        stats, radii = gaussian_stats(reference), knn_radii(torch.from_numpy(reference), cfg.k)
        torch.manual_seed(seed_for(cfg.seed, "init", 0))
        model = build_unet(cfg, real.channels, real.num_classes)
        r0 = RealDraws(real.pool, cfg).draw(0)  # R_0 exactly as the loop draws it
        conditional = model.config.num_class_embeds is not None  # --conditioning: labels to train and sample with
        train_images, train_labels = real.images[r0], (real.labels[r0] if conditional else None)
        num_classes = real.num_classes if conditional else 0
        rows, clock = [], {"train": 0.0, "last": time.perf_counter()}

        def on_step(step, ema):
            if step not in snapshots:
                return
            clock["train"] += time.perf_counter() - clock["last"]
            snapshot = copy.deepcopy(model)
            ema.copy_to(snapshot.parameters())
            snapshot.eval()
            for spec in samplers:
                name, steps = spec[0], int(spec[1])
                spacing = spec[2] if len(spec) > 2 else cfg.timestep_spacing
                scfg = dataclasses_replace(cfg, sampling_scheduler=name, sampling_steps=steps, timestep_spacing=spacing)
                start = time.perf_counter()
                images = np.concatenate([im for _, im, _ in sample_chunks(GuidedDenoiser(snapshot), scfg, cfg.n_synthetic,
                                                                           (cfg.seed, 0, 0), "sample",
                                                                           num_classes)])
                sample_seconds = time.perf_counter() - start
                metrics = compute_metrics(reference, extractor(images), cfg.k, stats, radii, cfg.seed)
                classes = len(np.unique(extractor.classify(images)))
                row = {"variant": text or "default", "seed": cfg.seed, "train_steps": step, "sampler": ":".join(spec),
                       "train_seconds": round(clock["train"], 2), "sample_seconds": round(sample_seconds, 2),
                       "generation_seconds": round(clock["train"] + sample_seconds, 2),
                       "val_fid": round(metrics["fid"], 2), "val_recall": round(metrics["recall"], 3),
                       "val_precision": round(metrics["precision"], 3), "classes": classes, "machine": machine}
                print(json.dumps(row), flush=True)
                rows.append(row)
            clock["last"] = time.perf_counter()

        train_diffusion(model, train_images, train_labels, cfg, cfg.train_steps, (cfg.seed, 0, 0), None, f"frontier {text}",
                        on_step=on_step)
        for row in rows:
            row["variant"] = text
        with open(log_path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    plot(log_path, args.out / "frontier.png", tuple(args.plot_samplers.split(",")))


def dataclasses_replace(cfg, **changes):
    import dataclasses
    return dataclasses.replace(cfg, **changes)


_SHORT = {"block_out_channels=": "widths ", "snr_gamma=": "γ ", "adam_beta2=": "β2 ", "learning_rate=": "lr ",
          "beta_schedule=squaredcos_cap_v2": "cosine", "timestep_spacing=": "", "batch_size=": "batch "}


def _short(variant: str) -> str:
    """A legend label: the variant's overrides with the field names shortened."""
    for long, short in _SHORT.items():
        variant = variant.replace(long, short)
    return variant.replace(",", ", ")


def plot(log_path: Path, png: Path, samplers=("ddim:10", "unipc:10")) -> None:
    """Validation FID (the mean over the seeds run) against seconds per generation: one colour per variant,
    one line style per sampler. The cost of a point is train_steps x the variant's seconds per step at its
    first snapshot (the median over seeds) plus the sampler's median sampling time, so a snapshot timed
    while something else shared the cores (the log keeps its raw seconds) does not move it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    df = pd.read_json(log_path, lines=True)
    df["variant"] = df["variant"].replace("", "default")
    first = df.sort_values("train_steps").groupby(["variant", "seed"]).first()
    per_step = (first["train_seconds"] / first["train_steps"]).groupby("variant").median()
    sample_seconds = df.groupby("sampler")["sample_seconds"].median()
    # one point per (variant, sampler, steps): the mean FID over the seeds run
    df = df.groupby(["variant", "sampler", "train_steps"], sort=False, as_index=False).agg(
        val_fid=("val_fid", "mean"), machine=("machine", "first"))
    df["cost"] = df["train_steps"] * df["variant"].map(per_step) + df["sampler"].map(sample_seconds)
    fig, ax = plt.subplots(figsize=(9, 5 + 0.12 * df["variant"].nunique()))
    colours = {v: plt.cm.tab20(i % 20) for i, v in enumerate(df["variant"].unique())}
    styles = dict(zip(samplers, ("-", ":", "--", "-.")))
    for (variant, sampler), group in df[df["sampler"].isin(samplers)].groupby(["variant", "sampler"], sort=False):
        group = group.sort_values("cost")
        ax.plot(group["cost"], group["val_fid"], marker="o", ms=3, color=colours[variant],
                ls=styles[sampler], label=f"{_short(variant)} | {sampler}")
    ax.set_xlabel("CPU seconds per fully-synthetic generation (train + 1,000 samples)")
    ax.set_ylabel("validation FID (lenet)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    ax.set_title(df["machine"].iloc[0][:100], fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    print(f"frontier: {png}")
    print(df.pivot_table(index=["variant", "train_steps"], columns="sampler", values="val_fid").round(1).to_string())


if __name__ == "__main__":
    main()

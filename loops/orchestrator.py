"""The generation loop: for t = 0 .. G-1 build D_t, train θ_t, draw S_t, score it, mark it DONE.

To resume, run the same command again: finished generations (DONE) are skipped; inside the first
unfinished one, a saved model skips training, a training checkpoint resumes it, and saved sample
chunks are kept.
"""
from __future__ import annotations

import copy
import io
import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from diffusers import DDIMPipeline, UNet2DModel
from PIL import Image
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from autophagy import faults
from autophagy.config import ConfigError, RunConfig
from autophagy.data import RealData, load_real_data
from autophagy.features import build_extractor
from autophagy.metrics import class_statistics, compute_metrics, gaussian_stats, knn_radii
from autophagy.models import build_sample_scheduler, build_unet
from autophagy.rundir import RunDir, atomic_save_npz, atomic_save_pretrained, atomic_write_bytes, atomic_write_text
from autophagy.sampling import GuidedDenoiser, chunk_sizes, sample_chunks
from autophagy.seeding import rng_for, seed_for
from autophagy.training import make_accelerator, train_diffusion
from loops.regimes import REGIMES, RealDraws, check_pool, sampler_of, validate_run

BASE, AUX = 0, 1  # role integers in the seeds of a generation's two models


@dataclass
class Scorer:
    """The feature extractor and the reference set's cached features, statistics and k-NN radii."""
    extractor: object
    reference: np.ndarray
    k: int
    num_classes: int

    def __post_init__(self):
        self.stats = gaussian_stats(self.reference)
        self.radii = knn_radii(torch.from_numpy(self.reference), self.k)

    def score(self, images: np.ndarray) -> dict:
        row = compute_metrics(self.reference, self.extractor(images), self.k, self.stats, self.radii)
        predicted = self.extractor.classify(images)
        if predicted is not None:
            row.update(class_statistics(predicted, self.num_classes))
        return row


def load_data_for(cfg: RunConfig) -> RealData:
    real = load_real_data(cfg.data, cfg.resolution, cfg.n_reference, cfg.seed, cfg.skip_unreadable)
    check_pool(cfg, len(real.images))
    if cfg.features == "lenet" and real.labels is None:
        raise ConfigError(f"--features: 'lenet' needs class labels and {cfg.data!r} has none; use --features inception")
    if cfg.class_conditional and real.labels is None:
        raise ConfigError(f"--sampling-bias: {cfg.sampling_bias} needs class labels and {cfg.data!r} has none; "
                          f"use --sampling-bias 1")
    return real


def run_loop(cfg: RunConfig, out: Path | str, overwrite: bool = False, log=print) -> RunDir:
    """Run (or resume) every generation of `cfg` into the run folder `out`."""
    validate_run(cfg)
    real = load_data_for(cfg)           # fails fast on data and pool sizes, before the folder is touched
    # cpu=True on a machine without CUDA: how accelerate recognises a multi-process CPU (gloo) launch
    state = PartialState(cpu=not torch.cuda.is_available())
    rd = RunDir(out)
    with rd.locked() if state.is_main_process else nullcontext():
        if state.is_main_process:
            if overwrite and rd.config_path.exists():
                for child in rd.root.iterdir():
                    if child.name != ".lock":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
            rd.check_or_write_config(cfg, overwrite, num_processes=state.num_processes)
        state.wait_for_everyone()
        loop = _Loop(cfg, rd, real, state, log)
        for t in range(cfg.generations):
            if not rd.is_done(t):
                loop.generation(t)
    return rd


def rescore_run(out: Path | str, log=print) -> RunDir:
    """Recompute every generation's metrics from its saved samples in the run's feature space (after
    the feature extractor changed, say); timings and counts are kept, metric values replaced."""
    rd = RunDir(out)
    cfg = RunConfig.from_dict(json.loads(rd.config_path.read_text()))
    real = load_data_for(cfg)
    with rd.locked():
        rd.reference_features_path.unlink(missing_ok=True)
        rd.baseline_path.unlink(missing_ok=True)
        scorer = _Loop(cfg, rd, real, PartialState(cpu=not torch.cuda.is_available()), log).scorer
        rows = []
        for row in rd.read_rows():
            images, _ = rd.load_samples(row["generation"])
            rows.append({**row, **scorer.score(images), "feature_id": scorer.extractor.identity})
        rd.write_rows(rows)
    log(f"rescored {len(rows)} generations of {rd.root} with {scorer.extractor.identity}")
    return rd


class _Loop:
    def __init__(self, cfg: RunConfig, rd: RunDir, real: RealData, state: PartialState, log):
        self.cfg, self.rd, self.real, self.state, self.log = cfg, rd, real, state, log
        self.regime = REGIMES[cfg.regime]
        self.sampler = sampler_of(cfg)
        self.draws = RealDraws(real.pool, cfg)
        self.device = state.device
        self._scorer_cache = None

    @property
    def scorer(self) -> "Scorer":
        if self._scorer_cache is None:  # built on first use: a finished run does no metric work
            self._scorer_cache = self._scorer()
        return self._scorer_cache

    # --- metrics set-up, once per run
    def _scorer(self) -> Scorer:
        cfg, rd, real = self.cfg, self.rd, self.real
        extractor = build_extractor(cfg, real)
        cached = None
        if rd.reference_features_path.exists():
            with np.load(rd.reference_features_path) as z:
                # the very same network, not just the same kind of extractor
                if "feature_id" in z.files and str(z["feature_id"]) == extractor.identity:
                    cached = z["features"]
        if cached is None:
            cached = extractor(real.images[real.reference])
            atomic_save_npz(rd.reference_features_path, features=cached, feature_id=extractor.identity)
            rd.baseline_path.unlink(missing_ok=True)
        scorer = Scorer(extractor, cached, cfg.k, real.num_classes)
        if not rd.baseline_path.exists():  # the real-vs-real floor: pool images scored like a generation
            n = min(cfg.n_synthetic, len(real.pool))
            baseline = real.pool[np.sort(rng_for(cfg.seed, "split", 1).choice(len(real.pool), n, replace=False))]
            row = {"kind": "real-baseline", "seed": cfg.seed, "feature_space": extractor.name,
                   "feature_id": extractor.identity, "k": cfg.k,
                   "n_reference": len(cached), "n_generated": n, **scorer.score(real.images[baseline])}
            if getattr(extractor, "accuracy", None) is not None:
                row["lenet_accuracy"] = extractor.accuracy
            atomic_write_text(rd.baseline_path, json.dumps(row) + "\n")
        return scorer

    # --- one generation
    def training_data(self, t: int) -> tuple[np.ndarray, np.ndarray | None, int, int]:
        ts = self.regime.training_set(t, self.draws)
        parts = [self.real.images[ts.real_indices]]
        labels = [self.real.labels[ts.real_indices] if self.real.labels is not None else None]
        for g in ts.synthetic_generations:
            images, lab = self.rd.load_samples(g)
            parts.append(images)
            labels.append(lab)
        n_synthetic = sum(len(p) for p in parts[1:])
        all_labels = None if any(lab is None for lab in labels) else np.concatenate(labels)
        return np.concatenate(parts), all_labels, len(ts.real_indices), n_synthetic

    def new_model(self, t: int) -> UNet2DModel:
        if self.cfg.init == "previous" and t > 0:
            return load_unet(self.rd.model_dir(t - 1))
        torch.manual_seed(seed_for(self.cfg.seed, "init", t))  # initial weights derive from integers
        return build_unet(self.cfg, self.real.channels, self.real.num_classes)

    def trained(self, path: Path, make, train, timing_key: str, t: int) -> tuple[UNet2DModel, float]:
        """Load a model saved by an earlier (interrupted) run, or train and save it."""
        timing_path = self.rd.work_dir(t) / f"{timing_key}.json"
        if path.exists():
            seconds = json.loads(timing_path.read_text())["seconds"] if timing_path.exists() else float("nan")
            return load_unet(path).to(self.device).eval(), seconds
        start = time.perf_counter()
        model = train(make())
        seconds = time.perf_counter() - start
        if self.state.is_main_process:
            # a whole DDIMPipeline folder, so DDIMPipeline.from_pretrained(path) samples from it
            atomic_save_pretrained(DDIMPipeline(unet=model, scheduler=build_sample_scheduler(self.cfg)), path)
            atomic_write_text(timing_path, json.dumps({"seconds": seconds}))
        self.state.wait_for_everyone()
        return model.eval(), seconds

    def sampling_autocast(self):
        if self.cfg.mixed_precision != "no":
            return make_accelerator(self.cfg).autocast
        if self.cfg.sampling_dtype == "bfloat16":
            return lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)
        return None

    def draw(self, denoiser: GuidedDenoiser, n_images: int, t: int, role: int, chunk_dir: Path):
        """Sample n_images in chunks spread over the processes; chunks on disk survive interruptions."""
        cfg, state = self.cfg, self.state
        n_chunks = len(chunk_sizes(n_images, cfg.sample_batch_size))
        purpose = "sample" if role == BASE else "aux_sample"
        mine = [i for i in range(n_chunks) if i % state.num_processes == state.process_index
                and not (chunk_dir / f"chunk_{i:04d}.npz").exists()]
        chunk_dir.mkdir(parents=True, exist_ok=True)
        results = {}
        autocast = self.sampling_autocast()
        bar = tqdm(total=n_images, desc=f"gen {t} {'sample' if role == BASE else 'aux sample'}", leave=False,
                   disable=not state.is_local_main_process, dynamic_ncols=True)
        for index, images, labels in sample_chunks(denoiser, cfg, n_images, (cfg.seed, t, role), purpose,
                                                   self.real.num_classes, self.device, mine, autocast):
            arrays = {"images": images, **({"labels": labels} if labels is not None else {})}
            atomic_save_npz(chunk_dir / f"chunk_{index:04d}.npz", **arrays)
            faults.reached("sample", t, role, index)
            results[index] = arrays
            bar.update(len(images))
        bar.close()
        state.wait_for_everyone()
        chunks = []
        for i in range(n_chunks):
            if i not in results:
                with np.load(chunk_dir / f"chunk_{i:04d}.npz") as z:
                    results[i] = {k: z[k] for k in z.files}
            chunks.append(results[i])
        images = np.concatenate([c["images"] for c in chunks])
        labels = np.concatenate([c["labels"] for c in chunks]) if "labels" in chunks[0] else None
        return images, labels

    def generation(self, t: int) -> None:
        cfg, rd, state = self.cfg, self.rd, self.state
        if state.is_main_process:
            rd.work_dir(t).mkdir(parents=True, exist_ok=True)
        state.wait_for_everyone()
        images, labels, n_train_real, n_train_synthetic = self.training_data(t)
        work = rd.work_dir(t)

        base, train_seconds = self.trained(
            rd.model_dir(t), lambda: self.new_model(t),
            lambda m: train_diffusion(m, images, labels, cfg, cfg.train_steps, (cfg.seed, t, BASE),
                                      work / "checkpoints_base", f"gen {t} train"), "train", t)
        cfg_weight = 1.0 / cfg.sampling_bias - 1.0
        denoiser = GuidedDenoiser(base.to(self.device), cfg_weight=cfg_weight, channels_last=cfg.channels_last)

        aux_seconds = 0.0
        if self.sampler == "sims":
            start = time.perf_counter()
            aux_images, aux_labels = None, None
            if not rd.aux_model_dir(t).exists():
                aux_images, aux_labels = self.draw(denoiser, cfg.n_aux, t, AUX, work / "aux_chunks")
            aux, _ = self.trained(
                rd.aux_model_dir(t), lambda: copy.deepcopy(base),
                lambda m: train_diffusion(m, aux_images, aux_labels, cfg, cfg.aux_train_steps, (cfg.seed, t, AUX), work / "checkpoints_aux",
                                          f"gen {t} aux fine-tune"), "aux", t)
            aux_seconds = time.perf_counter() - start
            denoiser = GuidedDenoiser(base.to(self.device), aux.to(self.device), cfg.guidance_weight, cfg_weight,
                                      cfg.channels_last)

        start = time.perf_counter()
        samples, sample_labels = self.draw(denoiser, cfg.n_synthetic, t, BASE, work / "chunks")
        sample_seconds = time.perf_counter() - start

        if state.is_main_process:
            faults.reached("metrics", t)
            scorer = self.scorer  # built once per run (feature extractor, reference), outside the timing
            start = time.perf_counter()
            row = scorer.score(samples)
            metric_seconds = time.perf_counter() - start
            arrays = {"images": samples, **({"labels": sample_labels} if sample_labels is not None else {})}
            atomic_save_npz(rd.samples_path(t), **arrays)
            atomic_write_bytes(rd.grid_path(t), grid_png(samples))
            row = {
                "generation": t, "regime": cfg.regime, "sampler": self.sampler, "seed": cfg.seed,
                "preset": cfg.preset, **row, "feature_space": scorer.extractor.name,
                "feature_id": scorer.extractor.identity, "k": cfg.k,
                "n_reference": len(scorer.reference), "n_generated": len(samples),
                "n_train_real": n_train_real, "n_train_synthetic": n_train_synthetic,
                "guidance_weight": cfg.guidance_weight if self.sampler == "sims" else 0.0,
                "sampling_bias": cfg.sampling_bias, "num_processes": state.num_processes,
                "train_seconds": train_seconds, "aux_seconds": aux_seconds,
                "sample_seconds": sample_seconds, "metric_seconds": metric_seconds, **memory_mb(),
            }
            rd.append_row(row)
            rd.mark_done(t)
            faults.reached("done", t)
            summary = (f"gen {t}/{cfg.generations - 1} {cfg.regime}: fid {row['fid']:.2f} precision {row['precision']:.3f} "
                       f"recall {row['recall']:.3f} coverage {row['coverage']:.3f}")
            if "classes_covered" in row:
                summary += f" classes {row['classes_covered']}"
            self.log(summary + f" | train {train_seconds:.1f}s aux {aux_seconds:.1f}s sample {sample_seconds:.1f}s "
                     f"metrics {metric_seconds:.1f}s")
        state.wait_for_everyone()


def memory_mb() -> dict:
    """Resident memory now and at its peak, in MB (to see that nothing grows across generations)."""
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        now = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        now = float("nan")
    return {"rss_mb": round(now, 1), "peak_rss_mb": round(peak, 1)}


def load_unet(path: Path) -> UNet2DModel:
    return UNet2DModel.from_pretrained(str(path), subfolder="unet")


def grid_png(images: np.ndarray, n: int = 64, scale: int = 4) -> bytes:
    """The first n images as a square grid PNG, upscaled so small digits are visible."""
    x = torch.from_numpy(images[:n])
    grid = make_grid(x, nrow=int(np.ceil(np.sqrt(len(x)))), padding=1, pad_value=255)
    img = Image.fromarray(grid.permute(1, 2, 0).numpy().squeeze())
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()

"""The generation loop: for t = 0 .. G-1 build D_t, train θ_t, draw S_t, score it, mark it DONE.

To resume, run the same command again: finished generations (DONE) are skipped; inside the first
unfinished one, a saved model skips training, a training checkpoint resumes it, and saved sample
chunks are kept.
"""
from __future__ import annotations

import copy
import dataclasses
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
from autophagy.features import build_extractor, resolve_features, train_lenet
from autophagy.hardware import resolve_sampling_dtype
from autophagy.metrics import class_statistics, compute_metrics, gaussian_stats, knn_radii, memorization
from autophagy.models import build_sample_scheduler, build_unet
from autophagy.rundir import RunDir, atomic_save_npz, atomic_save_pretrained, atomic_write_bytes, atomic_write_text
from autophagy.sampling import GuidedDenoiser, chunk_sizes, sample_chunks
from autophagy.seeding import rng_for, seed_for
from autophagy.training import make_accelerator, train_diffusion
from loops.regimes import REGIMES, RealDraws, check_pool, sampler_of, validate_run
from loops.samplers import SAMPLERS

BASE, AUX, PLAIN = 0, 1, 2  # role integers in the seeds: θ_t and S_t, the auxiliary model, plain health draws
PLAIN_KEYS = ("fid", "kid", "precision", "recall", "density", "coverage")  # scored on plain samples of guided runs


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

    def score(self, images: np.ndarray, seed: int = 0) -> dict:
        """FID and KID on every image; P/R/D/C on a seeded subset as large as the reference."""
        row = compute_metrics(self.reference, self.extractor(images), self.k, self.stats, self.radii, seed)
        predicted = self.extractor.classify(images)
        if predicted is not None:
            row.update(class_statistics(predicted, self.num_classes))
        return row


def load_data_for(cfg: RunConfig) -> RealData:
    real = load_real_data(cfg.data, cfg.resolution, cfg.n_reference, cfg.n_validation, cfg.skip_unreadable)
    check_pool(cfg, len(real.images))
    if cfg.features == "lenet" and real.labels is None:
        raise ConfigError(f"--features: 'lenet' needs class labels and {cfg.data!r} has none; use --features auto "
                          f"(an autoencoder trained on the pool, offline) or inception")
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
            rd.check_or_write_config(cfg, overwrite, num_processes=state.num_processes, resolve=lambda c: (
                dataclasses.replace(c, features=resolve_features(c.features, real))))
        state.wait_for_everyone()
        loop = _Loop(cfg, rd, real, state, log)
        for t in range(cfg.generations):
            if not rd.is_done(t):
                loop.generation(t)
                loop.tracker.log_generation(rd, t)
        loop.tracker.finish()
    return rd


class Tracker:
    """accelerate's experiment trackers (`--log-with`): each finished generation's numeric metrics and
    its sample grid, so a run or a sweep can be watched live. A no-op with `none`."""

    def __init__(self, cfg: RunConfig, rd: RunDir):
        self.accelerator = None
        if cfg.log_with != "none":
            from accelerate import Accelerator
            self.accelerator = Accelerator(log_with=cfg.log_with, project_dir=str(rd.root / "logs"),
                                           cpu=not torch.cuda.is_available())
            config = {k: (",".join(map(str, v)) if isinstance(v, tuple) else v)
                      for k, v in dataclasses.asdict(cfg).items()}
            self.accelerator.init_trackers(rd.root.name, config=config)

    def log_generation(self, rd: RunDir, t: int) -> None:
        if self.accelerator is None or not self.accelerator.is_main_process:
            return
        row = next(r for r in rd.read_rows() if r["generation"] == t)
        self.accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                              and k != "generation"}, step=t)
        grid = np.asarray(Image.open(rd.grid_path(t)).convert("RGB"))
        for tracker in self.accelerator.trackers:
            if hasattr(tracker, "log_images"):
                tracker.log_images({"samples": grid[None]}, step=t, dataformats="NHWC") \
                    if tracker.name == "tensorboard" else tracker.log_images({"samples": [grid]}, step=t)

    def finish(self) -> None:
        if self.accelerator is not None:
            self.accelerator.end_training()


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
            t = row["generation"]
            images, _ = rd.load_samples(t)
            row = {**row, **scorer.score(images, seed_for(cfg.seed, "subset", t)), "feature_id": scorer.extractor.identity}
            if "plain_fid" in row:  # the model-health draws: rescored too, or dropped (never left measured
                plain_images = rd.load_plain_samples(t)  # in another network than the row's feature_id says)
                if plain_images is not None:
                    plain = scorer.score(plain_images, seed_for(cfg.seed, "subset", t))
                    row.update({f"plain_{k}": plain[k] for k in PLAIN_KEYS})
                else:
                    row = {k: v for k, v in row.items() if not k.startswith("plain_")}
                    log(f"generation {t}: plain_* dropped, its unguided samples were not kept (a run older than "
                        f"plain_samples.npz)")
            rows.append(row)
        rd.write_rows(rows)
    log(f"rescored {len(rows)} generations of {rd.root} with {scorer.extractor.identity}")
    return rd


class _Loop:
    """Run-level state: the real data and its draws, the scorer, the regime and the sampler."""

    def __init__(self, cfg: RunConfig, rd: RunDir, real: RealData, state: PartialState, log):
        self.cfg, self.rd, self.real, self.state, self.log = cfg, rd, real, state, log
        self.regime = REGIMES[cfg.regime]
        self.sampler_name = sampler_of(cfg)
        self.draws = RealDraws(real.pool, cfg, samples=rd.load_samples, verifier=self.verifier,
                               num_classes=real.num_classes)
        self.device = state.device
        self.sampling_dtype = resolve_sampling_dtype(cfg.sampling_dtype, self.device.type)
        self._scorer_cache = None
        self._verifier_cache = None
        self.tracker = Tracker(cfg, rd)

    def verifier(self, images: np.ndarray):
        """The curated loop's verifier: the lenet classifier trained on the real pool only."""
        if self.real.labels is None:
            raise ConfigError(f"--regime: {self.cfg.regime!r} needs a verifier, which needs class labels; "
                              f"{self.cfg.data!r} has none")
        if self._verifier_cache is None:  # loaded from the cache once per run, not once per generation
            self._verifier_cache = train_lenet(self.real)
        return self._verifier_cache.confidence(images)

    @property
    def scorer(self) -> "Scorer":
        if self._scorer_cache is None:  # built on first use: a finished run does no metric work
            self._scorer_cache = self._scorer()
        return self._scorer_cache

    # --- metrics set-up, once per run
    def _scorer(self) -> Scorer:
        cfg, rd, real = self.cfg, self.rd, self.real
        extractor = build_extractor(cfg, real)
        evaluation = real.evaluation(cfg.evaluate_on)
        cached = None
        if rd.reference_features_path.exists():
            with np.load(rd.reference_features_path) as z:
                # the very same network, not just the same kind of extractor
                if "feature_id" in z.files and str(z["feature_id"]) == extractor.identity:
                    cached = z["features"]
        if cached is None:
            cached = extractor(real.images[evaluation])
            atomic_save_npz(rd.reference_features_path, features=cached, feature_id=extractor.identity)
            rd.baseline_path.unlink(missing_ok=True)
        scorer = Scorer(extractor, cached, cfg.k, real.num_classes)
        if not rd.baseline_path.exists():  # the real-vs-real floor: pool images scored like a generation
            n = min(cfg.n_synthetic, len(real.pool))
            baseline = real.pool[np.sort(rng_for(cfg.seed, "split", 1).choice(len(real.pool), n, replace=False))]
            held_out = real.validation if cfg.evaluate_on == "reference" and len(real.validation) else evaluation
            row = {"kind": "real-baseline", "seed": cfg.seed, "feature_space": extractor.name,
                   "feature_id": extractor.identity, "k": cfg.k, "evaluated_on": cfg.evaluate_on,
                   "n_reference": len(cached), "n_generated": n, **scorer.score(real.images[baseline], cfg.seed),
                   # held-out real images against R_0: what memorization reads for images that copy nothing
                   "memorization": memorization(real.images[held_out], real.images[self.draws.draw(0)])}
            if getattr(extractor, "accuracy", None) is not None:  # held-out quality of the feature network
                row[{"lenet": "lenet_accuracy"}.get(extractor.name, f"{extractor.name}_heldout_mse")] = extractor.accuracy
            atomic_write_text(rd.baseline_path, json.dumps(row) + "\n")
        return scorer

    def generation(self, t: int) -> None:
        Generation(self, t).run()


class Generation:
    """One generation t: build D_t, train θ_t, set up the sampler, draw S_t, score it, mark it DONE.
    Samplers (loops.samplers) call `draw`, `auxiliary_model`, `saved_model` and `denoiser` on it."""

    def __init__(self, loop: _Loop, t: int):
        self.loop, self.t = loop, t
        self.cfg, self.rd, self.state, self.device = loop.cfg, loop.rd, loop.state, loop.device
        self.work = loop.rd.work_dir(t)
        self.cfg_weight = 1.0 / self.cfg.sampling_bias - 1.0
        self.images, self.labels, self.n_train_real, self.n_train_synthetic = self.training_data()

    # --- D_t
    def training_data(self) -> tuple[np.ndarray, np.ndarray | None, int, int]:
        real, rd = self.loop.real, self.rd
        ts = self.loop.regime.training_set(self.t, self.loop.draws)
        self.regime_info = ts.info or {}
        parts = [real.images[ts.real_indices]]
        labels = [real.labels[ts.real_indices] if real.labels is not None else None]
        for g, indices in ts.synthetic_parts():
            images, lab = rd.load_samples(g)
            parts.append(images if indices is None else images[indices])
            labels.append(None if lab is None else (lab if indices is None else lab[indices]))
        n_synthetic = sum(len(p) for p in parts[1:])
        all_labels = None if any(lab is None for lab in labels) else np.concatenate(labels)
        return np.concatenate(parts), all_labels, len(ts.real_indices), n_synthetic

    # --- models: each saved as a whole DDIMPipeline folder, so DDIMPipeline.from_pretrained(path) samples from it
    def saved_model(self, path: Path, make) -> UNet2DModel:
        """Load the model saved at `path` by an earlier (interrupted) run, or make it and save it.
        Every process looks before any may write, so all take the same branch and meet the same barriers:
        a late process that saw the main one's fresh save would skip its barrier and pair the next one
        with the wrong step (found as a missing sample chunk in a resumed two-process run)."""
        saved = path.exists()
        self.state.wait_for_everyone()
        if saved:
            return load_unet(path).to(self.device).eval()
        return self.save_model(path, make())

    def save_model(self, path: Path, model: UNet2DModel) -> UNet2DModel:
        """Save `model` at `path` as a DDIMPipeline folder (the main process writes, all wait)."""
        if self.state.is_main_process:
            atomic_save_pretrained(DDIMPipeline(unet=model, scheduler=build_sample_scheduler(self.cfg)), path)
        self.state.wait_for_everyone()
        return model.to(self.device).eval()

    def _trained(self, path: Path, make, images, labels, steps: int, role: int, name: str) -> tuple[UNet2DModel, dict]:
        """A model trained on `images` (or loaded when saved), with its training stats and seconds."""
        stats_path = self.work / f"{name}.json"
        if path.exists():
            stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
            return load_unet(path).to(self.device).eval(), stats
        start = time.perf_counter()
        model, train_stats = train_diffusion(make(), images, labels, self.cfg, steps, (self.cfg.seed, self.t, role),
                                             self.work / ("checkpoints_base" if role == BASE else "checkpoints_aux"),
                                             f"gen {self.t} {name}")
        stats = {**dataclasses.asdict(train_stats), "seconds": time.perf_counter() - start}
        model = self.save_model(path, model)  # `path` did not exist when every process looked above
        if self.state.is_main_process:
            atomic_write_text(stats_path, json.dumps(stats))
        return model, stats

    def base_model(self) -> tuple[UNet2DModel, dict]:
        """θ_t: trained from scratch on D_t (MAD's protocol), or fine-tuned from θ_{t-1} with --init previous."""
        def make():
            if self.cfg.init == "previous" and self.t > 0:
                return load_unet(self.rd.model_dir(self.t - 1))
            torch.manual_seed(seed_for(self.cfg.seed, "init", self.t))  # initial weights derive from integers
            return build_unet(self.cfg, self.loop.real.channels, self.loop.real.num_classes)
        return self._trained(self.rd.model_dir(self.t), make, self.images, self.labels, self.cfg.train_steps,
                             BASE, "train")

    def auxiliary_model(self, base: UNet2DModel) -> tuple[UNet2DModel, dict]:
        """SIMS's and Neon's auxiliary model: a copy of θ_t fine-tuned on n_aux of θ_t's own samples.
        Returns it and the work it cost (train_images, sample_nfe, seconds) for the SamplerSetup."""
        cfg, start = self.cfg, time.perf_counter()
        images, labels = None, None
        plain = self.denoiser(base)
        if not self.rd.aux_model_dir(self.t).exists():
            images, labels = self.draw(plain, cfg.n_aux, AUX, self.work / "aux_chunks")
        aux, stats = self._trained(self.rd.aux_model_dir(self.t), lambda: copy.deepcopy(base), images, labels,
                                   cfg.aux_train_steps, AUX, "aux")
        nfe = cfg.n_aux * cfg.ddim_steps * plain.networks_per_step
        train_images = stats.get("train_images", cfg.aux_train_steps * cfg.batch_size)
        return aux, {"train_images": train_images, "sample_nfe": nfe, "seconds": time.perf_counter() - start}

    def denoiser(self, model: UNet2DModel) -> GuidedDenoiser:
        """Plain sampling from `model` (with classifier-free guidance when λ < 1)."""
        return GuidedDenoiser(model.to(self.device), cfg_weight=self.cfg_weight, channels_last=self.cfg.channels_last)

    # --- sampling
    def sampling_autocast(self):
        if self.cfg.mixed_precision != "no":
            return make_accelerator(self.cfg).autocast
        if self.loop.sampling_dtype == "bfloat16":
            return lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)
        return None

    def draw(self, denoiser: GuidedDenoiser, n_images: int, role: int, chunk_dir: Path):
        """Sample n_images in chunks spread over the processes; chunks on disk survive interruptions."""
        cfg, state, t = self.cfg, self.state, self.t
        n_chunks = len(chunk_sizes(n_images, cfg.sample_batch_size))
        purpose = {BASE: "sample", AUX: "aux_sample", PLAIN: "plain_sample"}[role]
        mine = [i for i in range(n_chunks) if i % state.num_processes == state.process_index
                and not (chunk_dir / f"chunk_{i:04d}.npz").exists()]
        chunk_dir.mkdir(parents=True, exist_ok=True)
        results = {}
        bar = tqdm(total=n_images, desc=f"gen {t} {purpose.replace('_', ' ')}", leave=False,
                   disable=not state.is_local_main_process, dynamic_ncols=True)
        for index, images, labels in sample_chunks(denoiser, cfg, n_images, (cfg.seed, t, role), purpose,
                                                   self.loop.real.num_classes, self.device, mine,
                                                   self.sampling_autocast()):
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

    # --- the generation
    def run(self) -> None:
        cfg, rd, state, t = self.cfg, self.rd, self.state, self.t
        if state.is_main_process:
            self.work.mkdir(parents=True, exist_ok=True)
        state.wait_for_everyone()
        base, train_stats = self.base_model()
        setup = SAMPLERS[self.loop.sampler_name].build(self, base)

        start = time.perf_counter()
        samples, sample_labels = self.draw(setup.denoiser, cfg.n_synthetic, BASE, self.work / "chunks")
        sample_seconds = time.perf_counter() - start
        plain_samples = None
        if setup.guided:  # the model's own health: unguided samples from θ_t (no SIMS, CFG w = 0), n_reference
            unguided = GuidedDenoiser(base.to(self.device), channels_last=cfg.channels_last)
            plain_samples, _ = self.draw(unguided, cfg.n_reference, PLAIN, self.work / "plain_chunks")

        if state.is_main_process:
            faults.reached("metrics", t)
            scorer = self.loop.scorer  # built once per run (feature extractor, reference), outside the timing
            start = time.perf_counter()
            row = scorer.score(samples, seed_for(cfg.seed, "subset", t))
            row["memorization"] = memorization(samples, self.images)
            if plain_samples is not None:
                plain = scorer.score(plain_samples, seed_for(cfg.seed, "subset", t))
                row.update({f"plain_{k}": plain[k] for k in PLAIN_KEYS})
            metric_seconds = time.perf_counter() - start
            arrays = {"images": samples, **({"labels": sample_labels} if sample_labels is not None else {})}
            atomic_save_npz(rd.samples_path(t), **arrays)
            if plain_samples is not None:  # kept so that `rescore` can measure the model's health again
                atomic_save_npz(rd.plain_samples_path(t), images=plain_samples)
            atomic_write_bytes(rd.grid_path(t), grid_png(samples))
            nfe_per_image = cfg.ddim_steps * setup.denoiser.networks_per_step
            row = {
                "generation": t, "regime": cfg.regime, "sampler": self.loop.sampler_name, "seed": cfg.seed,
                "preset": cfg.preset, **row, "feature_space": scorer.extractor.name,
                "feature_id": scorer.extractor.identity, "k": cfg.k, "evaluated_on": cfg.evaluate_on,
                "n_reference": len(scorer.reference), "n_generated": len(samples),
                "n_prdc": min(len(samples), len(scorer.reference)),
                "n_train_real": self.n_train_real, "n_train_synthetic": self.n_train_synthetic,
                "guidance_weight": cfg.guidance_weight if self.loop.sampler_name == "sims" else 0.0,
                "neon_weight": cfg.neon_weight if self.loop.sampler_name == "neon" else 0.0,
                "sampling_bias": cfg.sampling_bias, "num_processes": state.num_processes,
                "sampling_dtype": self.loop.sampling_dtype,
                "ema_decay_effective": train_stats.get("ema_decay_effective", float("nan")),
                "cost_train_images": train_stats.get("train_images", cfg.train_steps * cfg.batch_size)
                                     + setup.train_images,
                "cost_sample_nfe": cfg.n_synthetic * nfe_per_image + setup.sample_nfe,
                "train_seconds": train_stats.get("seconds", float("nan")), "aux_seconds": setup.seconds,
                "sample_seconds": sample_seconds, "metric_seconds": metric_seconds,
                **self.regime_info, **memory_mb(),
            }
            rd.append_row(row)
            rd.mark_done(t)
            faults.reached("done", t)
            summary = (f"gen {t}/{cfg.generations - 1} {cfg.regime}: fid {row['fid']:.2f} precision {row['precision']:.3f} "
                       f"recall {row['recall']:.3f} coverage {row['coverage']:.3f}")
            if "classes_covered" in row:
                summary += f" classes {row['classes_covered']}"
            if "plain_fid" in row:
                summary += f" (plain fid {row['plain_fid']:.2f})"
            self.loop.log(summary + f" | train {row['train_seconds']:.1f}s aux {setup.seconds:.1f}s "
                          f"sample {sample_seconds:.1f}s metrics {metric_seconds:.1f}s")
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

"""A generation's model artifacts: each model saved as a whole DDIMPipeline folder (so
`DDIMPipeline.from_pretrained(path)` samples from it) with its training stats inside, loaded on resume,
and the barriers that keep every process on the same branch; the sample grid; memory use."""
from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import PartialState
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel
from PIL import Image
from torchvision.utils import make_grid

from autophagy import faults
from autophagy.config import RunConfig
from autophagy.models import build_train_scheduler
from autophagy.rundir import RunFolderError, atomic_save_pretrained, load_json
from autophagy.training import train_diffusion

STATS_FILE = "train_stats.json"  # inside the model folder: the stats survive exactly when the model does


def load_unet(path: Path) -> UNet2DModel:
    """A saved model (safetensors only: loading never unpickles); one line naming a damaged folder."""
    try:
        return UNet2DModel.from_pretrained(str(path), subfolder="unet", use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{str(path)!r} is not a readable model ({type(exc).__name__}); remove it and run "
                             f"the same command again to retrain it") from None


def save_model(state: PartialState, cfg: RunConfig, path: Path, model: UNet2DModel, stats: dict | None = None) -> UNet2DModel:
    """Save `model` at `path` as a DDIMPipeline folder with its stats (the main process writes, all wait)."""
    if state.is_main_process:
        # a DDIM scheduler whatever the run samples with: DDIMPipeline.from_pretrained(path) then just works
        scheduler = DDIMScheduler.from_config(build_train_scheduler(cfg).config)
        atomic_save_pretrained(DDIMPipeline(unet=model, scheduler=scheduler), path,
                               {STATS_FILE: json.dumps(stats or {})})
    faults.barrier(state)
    return model.to(state.device).eval()


def saved_model(state: PartialState, cfg: RunConfig, path: Path, make: Callable[[], UNet2DModel]) -> UNet2DModel:
    """Load the model saved at `path` by an earlier (interrupted) run, or make it and save it.
    Every process looks before any may write, so all take the same branch and meet the same barriers:
    a late process that saw the main one's fresh save would skip its barrier and pair the next one
    with the wrong step (found as a missing sample chunk in a resumed two-process run)."""
    saved = path.exists()
    faults.barrier(state)
    if saved:
        return load_unet(path).to(state.device).eval()
    return save_model(state, cfg, path, make())


def trained(state: PartialState, cfg: RunConfig, path: Path, make: Callable[[], UNet2DModel], images, labels, *,
            train_steps: int, seed_ints: tuple[int, ...], checkpoint_dir: Path, description: str,
            legacy_stats: Path | None = None) -> tuple[UNet2DModel, dict]:
    """A model trained on `images` (or loaded when saved), with its training stats and seconds. As in
    `saved_model`, every process looks before any may write."""
    saved = path.exists()
    faults.barrier(state)
    if saved:  # stats beside the model; a run from before round 3 kept them in work/<name>.json
        stats = load_json(path / STATS_FILE) or (load_json(legacy_stats) if legacy_stats else None)
        return load_unet(path).to(state.device).eval(), stats or {}
    start = time.perf_counter()
    model, train_stats = train_diffusion(make(), images, labels, cfg, train_steps, seed_ints, checkpoint_dir, description)
    stats = {**dataclasses.asdict(train_stats), "seconds": time.perf_counter() - start}
    model = save_model(state, cfg, path, model, stats)
    faults.reached("saved", *seed_ints[1:])
    return model, stats


def grid_png(images: np.ndarray, n: int = 64, scale: int = 4) -> bytes:
    """The first n images as a square grid PNG, upscaled so small digits are visible."""
    x = torch.from_numpy(images[:n])
    grid = make_grid(x, nrow=int(np.ceil(np.sqrt(len(x)))), padding=1, pad_value=255)
    img = Image.fromarray(grid.permute(1, 2, 0).numpy().squeeze())
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def memory_mb() -> dict:
    """Resident memory now and at its peak, in MB (to see that nothing grows across generations)."""
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        now = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        now = float("nan")
    return {"rss_mb": round(now, 1), "peak_rss_mb": round(peak, 1)}

"""Train one diffusion model on one set of images: accelerate for devices, precision and DDP,
diffusers' DDPMScheduler for the forward process and EMAModel for the weights that are kept.

Resume: a checkpoint (accelerate `save_state`: model, optimizer, EMA) is written every
`checkpoint_every` steps into `checkpoint_dir/step_XXXXXXX`, atomically. The batch and the noise of
step s derive from (seed, s) alone, so a resumed run takes exactly the steps an uninterrupted one
would have taken.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from autophagy import faults
from autophagy.config import RunConfig
from autophagy.models import build_train_scheduler
from autophagy.seeding import torch_generator

NAN_CHECK_EVERY = 10  # steps between finiteness checks of the loss (each check syncs the device)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the run stops with exit code 1 and resumes from the last checkpoint."""


def make_accelerator(cfg: RunConfig) -> Accelerator:
    return Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available(),
                       dynamo_backend="inductor" if cfg.compile else "no")


def images_to_tensor(images: np.ndarray, device) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [-1, 1] on `device`."""
    return torch.from_numpy(images).to(device=device, dtype=torch.float32).div_(127.5).sub_(1.0)


def _latest_checkpoint(checkpoint_dir: Path) -> tuple[int, Path | None]:
    done = sorted(checkpoint_dir.glob("step_*[0-9]")) if checkpoint_dir.exists() else []
    return (int(done[-1].name.split("_")[1]), done[-1]) if done else (0, None)


def train_diffusion(
    model: UNet2DModel,
    images: np.ndarray,               # (N, C, H, W) uint8 training set D_t
    labels: np.ndarray | None,        # (N,) class labels, used when the model is class-conditional
    cfg: RunConfig,
    train_steps: int,                 # optimizer steps to take in total
    seed_ints: tuple[int, ...],       # (run seed, generation, role): the integers all randomness derives from
    checkpoint_dir: Path | None = None,
    description: str = "train",
) -> UNet2DModel:
    """Train `model` in place for `train_steps` steps; return it holding its EMA weights."""
    accelerator = make_accelerator(cfg)
    scheduler = build_train_scheduler(cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema = EMAModel(accelerator.unwrap_model(model).parameters(), decay=cfg.ema_decay, foreach=True)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)

    start_step = 0
    if checkpoint_dir is not None:
        start_step, latest = _latest_checkpoint(checkpoint_dir)
        if latest is not None:
            accelerator.load_state(str(latest))

    data = images_to_tensor(images, accelerator.device)
    class_labels = None
    null_class = None
    if accelerator.unwrap_model(model).config.num_class_embeds:
        null_class = accelerator.unwrap_model(model).config.num_class_embeds - 1
        class_labels = torch.as_tensor(labels, device=accelerator.device)
    n_images, world, rank = len(data), accelerator.num_processes, accelerator.process_index
    per_rank = max(1, cfg.batch_size // world)

    model.train()
    bar = tqdm(range(start_step, train_steps), initial=start_step, total=train_steps, desc=description,
               disable=not accelerator.is_local_main_process, leave=False, dynamic_ncols=True)
    for step in bar:
        # batch, timesteps and noise of this step derive from (seeds, step, rank) only
        gen = torch_generator(*seed_ints[:1], "train", *seed_ints[1:], step, rank)
        idx = torch.randint(0, n_images, (per_rank,), generator=gen).to(accelerator.device)
        x0 = data[idx]
        noise = torch.randn(x0.shape, generator=gen).to(accelerator.device)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (per_rank,), generator=gen).to(accelerator.device)
        x_t = scheduler.add_noise(x0, noise, timesteps)
        target = noise if cfg.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, timesteps)
        cond = None
        if class_labels is not None:
            cond = class_labels[idx].clone()
            drop = torch.rand(per_rank, generator=gen).to(accelerator.device) < cfg.label_dropout
            cond[drop] = null_class
        if cfg.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        with accelerator.autocast():
            pred = model(x_t, timesteps, class_labels=cond).sample
        loss = F.mse_loss(pred.float(), target)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(accelerator.unwrap_model(model).parameters())

        done = step + 1
        at_checkpoint = checkpoint_dir is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < train_steps
        if done % NAN_CHECK_EVERY == 0 or at_checkpoint or done == train_steps:
            value = loss.item()
            if not np.isfinite(value):
                raise TrainingDiverged(f"{description}: loss is {value} at step {done}; "
                                       f"rerun the same command to resume from the last good checkpoint")
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        if at_checkpoint:
            _save_checkpoint(accelerator, checkpoint_dir, done)
        faults.reached("train", *seed_ints[1:], done)
    bar.close()

    unwrapped = accelerator.unwrap_model(model)
    ema.copy_to(unwrapped.parameters())
    unwrapped.eval()
    accelerator.wait_for_everyone()
    return unwrapped.to(memory_format=torch.contiguous_format)


def _save_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, step: int) -> None:
    """accelerate save_state into a temporary folder, renamed into place; older ones removed."""
    final = checkpoint_dir / f"step_{step:07d}"
    tmp = checkpoint_dir / f"step_{step:07d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp.rename(final)
        for old in checkpoint_dir.glob("step_*[0-9]"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()

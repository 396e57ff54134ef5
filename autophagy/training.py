"""Train one diffusion model on one set of images: accelerate for devices, precision and DDP,
diffusers' DDPMScheduler for the forward process and EMAModel for the weights that are kept.

Resume: a checkpoint (accelerate `save_state`: model, optimizer, EMA) is written every
`checkpoint_every` steps into `checkpoint_dir/step_XXXXXXX`, atomically. The batch and the noise of
step s derive from (seed, s, rank) alone, so a resumed run takes exactly the steps an uninterrupted one
would have taken. After a NaN loss, `retries.json` counts the divergence and the retry number joins
the batch seeds: the rerun resumes from the last checkpoint on a different path instead of replaying
the same NaN.
"""
from __future__ import annotations

import copy
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import TorchDynamoPlugin
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel, compute_snr
from tqdm.auto import tqdm

from autophagy import faults, threads
from autophagy.config import ConfigError, RunConfig
from autophagy.hardware import resolve_mixed_precision
from autophagy.rundir import atomic_write_text
from autophagy.models import build_train_scheduler
from autophagy.seeding import torch_generator

NAN_CHECK_EVERY = 10  # steps between finiteness checks of the loss (each check syncs the device)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the run stops with exit code 1. Rerunning resumes from the last
    checkpoint with a new retry number in the batch seeds, so it takes a different path past the bad step."""


def make_accelerator(cfg: RunConfig) -> Accelerator:
    dynamo = TorchDynamoPlugin(backend="inductor", mode=cfg.compile_mode) if cfg.compile else TorchDynamoPlugin(backend="no")
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    return Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision, device_type),
                       cpu=device_type == "cpu", dynamo_plugin=dynamo)


def images_to_tensor(images: np.ndarray, device) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [-1, 1] on `device`."""
    return torch.from_numpy(images).to(device=device, dtype=torch.float32).div_(127.5).sub_(1.0)


def make_ema(parameters, cfg: RunConfig) -> EMAModel:
    """diffusers' EMAModel with the configured decay applied as stated: the EMA copies the weights for
    `ema_warmup_steps` steps, then averages with exactly `ema_decay` (min_decay = decay switches off
    EMAModel's own (1+s)/(10+s) ramp, which would otherwise hold the decay near 0.976 after 360 steps)."""
    return EMAModel(parameters, decay=cfg.ema_decay, min_decay=cfg.ema_decay,
                    update_after_step=cfg.ema_warmup_steps, foreach=True)


@dataclass
class TrainStats:
    """What one training call did: for the metrics row and the compute accounting."""
    steps: int                    # optimizer steps taken in total (resumed steps included)
    train_images: int             # images seen by those steps, all processes together
    ema_decay_effective: float    # the EMA decay applied at the last step


# What a checkpoint folder must hold to be resumed from. The EMA weights are saved as safetensors beside
# accelerate's state, not through `register_for_checkpointing`: accelerate unpickles those with
# weights_only=False, and a run folder received from someone else must never execute code.
CHECKPOINT_FILES = ("model.safetensors", "optimizer.bin", "ema.safetensors")


def _latest_checkpoint(checkpoint_dir: Path) -> tuple[int, Path | None]:
    done = sorted(checkpoint_dir.glob("step_*[0-9]")) if checkpoint_dir.exists() else []
    return (int(done[-1].name.split("_")[1]), done[-1]) if done else (0, None)


def _resume(accelerator: Accelerator, model, optimizer, ema: EMAModel, checkpoint_dir: Path, description: str) -> int:
    """Load the latest checkpoint; return its step (0 without one). A damaged checkpoint (a file missing or
    unreadable on any process) is said, removed, and every process starts again from step 0 with the
    initial weights: the steps are seeded by their number, so the result is an uninterrupted run's."""
    from safetensors.torch import load_file
    step, latest = _latest_checkpoint(checkpoint_dir)
    if latest is None:
        return 0
    initial = (copy.deepcopy(accelerator.unwrap_model(model).state_dict()), copy.deepcopy(optimizer.state_dict()),
               [p.clone() for p in ema.shadow_params])
    error = None
    try:
        missing = [f for f in CHECKPOINT_FILES if not (latest / f).is_file()]
        if missing:
            raise FileNotFoundError(", ".join(missing))
        accelerator.load_state(str(latest))
        shadow = load_file(str(latest / "ema.safetensors"), device="cpu")
        ema.shadow_params = [shadow[str(i)].to(accelerator.device) for i in range(len(ema.shadow_params))]
        ema.optimization_step = step
    except Exception as exc:  # noqa: BLE001 — any damage: retrain rather than stop
        error = f"{type(exc).__name__}: {exc}"
    # every process takes the same branch: one that could not read its part makes all of them retrain
    failed = accelerator.reduce(torch.tensor(float(error is not None), device=accelerator.device), reduction="sum")
    if failed.item() == 0:
        return step
    accelerator.unwrap_model(model).load_state_dict(initial[0])
    optimizer.load_state_dict(initial[1])
    ema.shadow_params, ema.optimization_step = initial[2], 0
    if error is not None:
        print(f"autophagy: {description}: checkpoint {latest} is damaged ({error}); training again from step 0",
              file=sys.stderr, flush=True)
    faults.barrier(accelerator)
    if accelerator.is_main_process:
        shutil.rmtree(latest, ignore_errors=True)
    faults.barrier(accelerator)
    return 0


def _retries(checkpoint_dir: Path | None) -> int:
    """How often this training diverged before: part of the batch seeds after a divergence."""
    path = checkpoint_dir / "retries.json" if checkpoint_dir is not None else None
    return json.loads(path.read_text())["retries"] if path is not None and path.exists() else 0


@dataclass
class _Batches:
    """The training set on the device; the batch, timesteps and noise of a step derive from
    (seeds, step, rank[, retry]) only, so a resumed run takes exactly the same steps."""
    data: torch.Tensor
    class_labels: torch.Tensor | None
    null_class: int | None
    per_rank: int
    seed_ints: tuple[int, ...]
    retries: int
    rank: int

    def __call__(self, step: int, scheduler, cfg: RunConfig):
        device, n = self.data.device, self.per_rank
        # drawn where the data lives: on a GPU nothing is drawn on the host and copied each step (one of the
        # per-step costs that bound cifar10 training); on the CPU the draws are the same as ever
        gen = torch_generator(*self.seed_ints[:1], "train", *self.seed_ints[1:], step, self.rank,
                              *([self.retries] if self.retries else []), device=device)
        idx = torch.randint(0, len(self.data), (n,), generator=gen, device=device)
        x0 = self.data[idx]
        noise = torch.randn(x0.shape, generator=gen, device=device)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=gen, device=device)
        x_t = scheduler.add_noise(x0, noise, timesteps)
        target = noise if cfg.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, timesteps)
        cond = None
        if self.class_labels is not None:  # label dropout to the null class, for classifier-free guidance
            cond = self.class_labels[idx].clone()
            cond[torch.rand(n, generator=gen, device=device) < cfg.label_dropout] = self.null_class
        if cfg.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        return x_t, timesteps, cond, target


def loss_weights(scheduler, timesteps: torch.Tensor, cfg: RunConfig) -> torch.Tensor | None:
    """Min-SNR-γ (Hang et al. 2023): weight each timestep's loss by min(SNR, γ) / SNR of the target, i.e.
    min(SNR, γ)/SNR for ε-prediction and min(SNR, γ)/(SNR + 1) for v-prediction; None for a plain MSE."""
    if cfg.loss_weighting == "none":
        return None
    snr = compute_snr(scheduler, timesteps)
    clipped = torch.clamp(snr, max=cfg.snr_gamma)
    return clipped / (snr + 1) if cfg.prediction_type == "v_prediction" else clipped / snr


def _batches(accelerator: Accelerator, model, images, labels, cfg, seed_ints, retries) -> _Batches:
    world = accelerator.num_processes
    if cfg.batch_size % world:
        raise ConfigError(f"--batch-size: {cfg.batch_size} is not divisible by the {world} processes; "
                          f"choose a multiple of {world}")
    num_class_embeds = accelerator.unwrap_model(model).config.num_class_embeds
    class_labels = torch.as_tensor(labels, device=accelerator.device) if num_class_embeds else None
    return _Batches(images_to_tensor(images, accelerator.device), class_labels,
                    num_class_embeds - 1 if num_class_embeds else None, cfg.batch_size // world, seed_ints,
                    retries, accelerator.process_index)


def _check_finite(accelerator: Accelerator, loss: torch.Tensor, step: int, description: str,
                  checkpoint_dir: Path | None) -> float:
    """The loss averaged over processes (a NaN on any rank stops every rank at the same step)."""
    value = accelerator.reduce(loss.detach(), reduction="mean").item()
    if not np.isfinite(value):
        retries = _retries(checkpoint_dir) + 1
        if checkpoint_dir is not None and accelerator.is_main_process:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(checkpoint_dir / "retries.json", json.dumps({"retries": retries}))
        raise TrainingDiverged(f"{description}: loss is {value} at step {step}; run the same command again to resume "
                               f"from the last checkpoint with fresh batches (retry {retries}), or lower --learning-rate")
    return value


def quiet_unless_main(is_main: bool) -> dict:
    """tqdm's switch: off on every process but the local main one; on the main one none given, so tqdm's own
    environment (TQDM_DISABLE=1, TQDM_MININTERVAL, ...) still decides, which an explicit disable= would override."""
    return {} if is_main else {"disable": True}


@threads.engine_claim()
def train_diffusion(
    model: UNet2DModel,
    images: np.ndarray,               # (N, C, H, W) uint8 training set D_t
    labels: np.ndarray | None,        # (N,) class labels, used when the model is class-conditional
    cfg: RunConfig,
    train_steps: int,                 # optimizer steps to take in total
    seed_ints: tuple[int, ...],       # (run seed, generation, role): the integers all randomness derives from
    checkpoint_dir: Path | None = None,
    description: str = "train",
    on_step=None,                     # on_step(steps_done, ema): watch training (the frontier benchmark's snapshots)
) -> tuple[UNet2DModel, TrainStats]:
    """Train `model` in place for `train_steps` steps; return it holding its EMA weights, and its stats."""
    accelerator = make_accelerator(cfg)
    scheduler = build_train_scheduler(cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # torch's fused AdamW (one kernel for all parameters, the same update) on a GPU, and on the CPU where the
    # config asks for it (about 5 % of a cpu-preset step); else the per-tensor loop earlier CPU runs were computed with
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0,
                                  betas=(0.9, cfg.adam_beta2),
                                  fused=accelerator.device.type == "cuda" or cfg.fused_adamw == "always")
    model, optimizer = accelerator.prepare(model, optimizer)
    ema = make_ema(accelerator.unwrap_model(model).parameters(), cfg)
    ema.to(accelerator.device)

    start_step = _resume(accelerator, model, optimizer, ema, checkpoint_dir, description) if checkpoint_dir is not None else 0
    batches = _batches(accelerator, model, images, labels, cfg, seed_ints, _retries(checkpoint_dir))

    model.train()
    bar = tqdm(range(start_step, train_steps), initial=start_step, total=train_steps, desc=description,
               leave=False, dynamic_ncols=True, **quiet_unless_main(accelerator.is_local_main_process))
    for step in bar:
        x_t, timesteps, cond, target = batches(step, scheduler, cfg)
        with accelerator.autocast():
            pred = model(x_t, timesteps, class_labels=cond).sample
        weights = loss_weights(scheduler, timesteps, cfg)
        if weights is None:
            loss = F.mse_loss(pred.float(), target)
        else:
            loss = (F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3)) * weights).mean()
        accelerator.backward(loss)
        if cfg.lr_warmup_steps:  # a linear ramp, a function of the step alone (so resume needs no state)
            for group in optimizer.param_groups:
                group["lr"] = cfg.learning_rate * min(1.0, (step + 1) / cfg.lr_warmup_steps)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(accelerator.unwrap_model(model).parameters())

        done = step + 1
        at_checkpoint = checkpoint_dir is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < train_steps
        if done % NAN_CHECK_EVERY == 0 or at_checkpoint or done == train_steps:
            threads.rebalance()  # another autophagy process may have started or ended
            value = _check_finite(accelerator, loss, done, description, checkpoint_dir)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        if at_checkpoint:
            _save_checkpoint(accelerator, ema, checkpoint_dir, done)
        faults.reached("train", *seed_ints[1:], done)
        if on_step is not None:
            on_step(done, ema)
    bar.close()

    # the network itself, not torch.compile's wrapper (which unwrap_model keeps by default): sampling runs
    # it eager; the compiled one would recompile for every chunk size and for inference mode (a micro
    # generation's 1,000 samples took 34.5 s instead of 0.14 s on the CPU)
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    ema.copy_to(unwrapped.parameters())
    unwrapped.eval()
    faults.barrier(accelerator)
    stats = TrainStats(train_steps, train_steps * batches.per_rank * accelerator.num_processes,
                       float(ema.get_decay(train_steps)))
    return unwrapped.to(memory_format=torch.contiguous_format), stats


def _save_checkpoint(accelerator: Accelerator, ema: EMAModel, checkpoint_dir: Path, step: int) -> None:
    """accelerate save_state and the EMA weights (safetensors) into a temporary folder, renamed into
    place; older ones removed."""
    from safetensors.torch import save_file
    final = checkpoint_dir / f"step_{step:07d}"
    tmp = checkpoint_dir / f"step_{step:07d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    faults.barrier(accelerator)
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        save_file({str(i): p.detach().contiguous().cpu() for i, p in enumerate(ema.shadow_params)},
                  str(tmp / "ema.safetensors"))
    faults.barrier(accelerator)
    if accelerator.is_main_process:
        tmp.rename(final)
        for old in checkpoint_dir.glob("step_*[0-9]"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    faults.barrier(accelerator)

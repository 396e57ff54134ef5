"""One frozen config for a run: the CLI builds it, `config.json` stores it, resume reloads it.

Presets fill the fields a user did not set. `validate()` rejects every bad value before any work,
with one line naming the field, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """Bad user input: the CLI prints it as one line and exits with code 2."""


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    # --- the experiment
    regime: str = _f("fully-synthetic", "self-consuming regime (what D_t is)")
    generations: int = _f(3, "number of generations G (generation 0 trains on real data only)")
    preset: str = _f("cpu", "size preset: micro (tests), cpu (default), mnist-full (MAD's MNIST sizes on the 70k "
                     "digits), cifar10 (GPU, paper scale)")
    data: str = _f("mnist", "mnist (5,000 digits, built in), digits, mnist-70k (after `autophagy fetch-data "
                   "mnist-70k`), a save_to_disk folder, an image folder, or a hub name")
    seed: int = _f(0, "run seed; every other seed derives from it and integers")
    sampler: str = _f("", "plain, sims, neon or a plug-in's sampler; empty = the regime's own sampler")
    plugins: tuple = _f((), "plug-in modules (dotted names or .py files) imported before validation; repeatable")
    init: str = _f("scratch", "scratch: each generation trains from scratch (MAD); previous: fine-tune θ_{t-1}")
    finetune_epochs: float = _f(0.0, "--init previous: generations t >= 1 fine-tune θ_{t-1} for this many passes over D_t, "
                                "ceil(epochs·|D_t| / batch_size) steps (Gillman et al.'s MNIST code: 1); 0 = train_steps")
    finetune_learning_rate: float = _f(0.0, "--init previous: the learning rate of generations t >= 1 (Gillman et al.'s "
                                       "MNIST code: the base's last rate over their --lr_divisor 20); 0 = learning_rate")
    allow_reuse: bool = _f(False, "fresh-data: draw real images with replacement when the pool runs out")
    skip_unreadable: bool = _f(False, "user data: skip images that cannot be decoded instead of stopping")
    # --- sizes of the sets
    n_real: int = _f(1000, "real images in R_0 (generation 0's training set)")
    n_real_fresh: int = _f(250, "fresh-data: real images drawn per generation t >= 1 (0 = n_real)")
    n_synthetic: int = _f(1000, "synthetic images S_t sampled per generation")
    n_reference: int = _f(1000, "held-out real images every metric is computed against (the test set)")
    n_eval: int = _f(0, "generated images each generation is scored on: the first n_eval of one draw of "
                        "max(n_synthetic, n_eval) from the generation's sampler (S_t is its first n_synthetic), so "
                        "that runs of different n_synthetic are scored alike (FID is biased and KID noisy at a few "
                        "hundred images); 0 = all of S_t, as runs before the field")
    n_validation: int = _f(500, "held-out real images for tuning only (ω, steps, ...), disjoint from pool and reference")
    class_weights: str = _f("", "an imbalanced real pool: a weight per class, comma-separated; R_0 holds "
                            "round(n_real · w_c / Σw) images of class c (fresh draws stay uniform); empty = off")
    evaluate_on: str = _f("reference", "split the rows are scored on: reference (results) or validation (tuning)")
    # --- SIMS and sampling bias
    guidance_weight: float = _f(2.0, "SIMS ω >= 0: ε = (1+ω)·ε_base − ω·ε_aux")
    n_aux: int = _f(1000, "SIMS: images drawn from the base to fine-tune the auxiliary model")
    aux_train_steps: int = _f(100, "SIMS: fine-tuning steps of the auxiliary model")
    neon_weight: float = _f(0.5, "Neon w >= 0: sample with one network θ = (1+w)·θ_base − w·θ_aux")
    neon_n_aux: int = _f(0, "Neon: base samples its auxiliary model is fine-tuned on (0 = 12 % of n_real, as "
                         "Neon's CIFAR-10 run: 6k samples for 50k real images)")
    neon_aux_train_steps: int = _f(0, "Neon: fine-tuning steps (0 = 1.75 % of train_steps, Neon's CIFAR-10 budget)")
    neon_learning_rate: float = _f(0.0, "Neon: fine-tuning learning rate (0 = a tenth of learning_rate, as Neon's "
                                   "1e-4 against EDM's 1e-3), ramped linearly as EDM ramps it (10 Mimg ramp, 6 "
                                   "Mimg fine-tune: 60 % of the rate at the last step)")
    curation_keep: float = _f(0.5, "curated: fraction q of S_{t-1} kept, by the verifier's confidence, in (0, 1]")
    correction: str = _f("kmeans", "self-correcting: the correction function C (a registration; kmeans = the nearest "
                         "of correction_clusters k-means centroids of R_0's images of the sample's class, as "
                         "Gillman et al.'s MNIST code)")
    correction_strength: float = _f(1.0, "self-correcting: γ in [0, 1]; each synthetic image x becomes "
                                    "(1−γ)·x + γ·C(x) (1 = replaced by its correction, as Gillman et al.'s code)")
    correction_clusters: int = _f(16, "self-correcting: k-means centroids per class (Gillman et al.: 16)")
    target_distribution: str = _f("", "SIMS distribution shifting: a probability per class, comma-separated "
                                  "(q_0,...,q_{K-1}, summing to 1); S_t is steered to this class mix; empty = off")
    shift_exaggeration: float = _f(1.0, "distribution shifting: calibration κ > 0 of the auxiliary mix, π_s ∝ "
                                   "π_r·(π_r/q)^(κ/ω) (1 = the derivation; a finite fine-tune adopts π_s only in part)")
    shift_calibration: int = _f(0, "distribution shifting: calibration rounds; each draws n_aux guided samples, "
                                "multiplies π_s by (g/q)^(step/ω) for their class mix g and fine-tunes the auxiliary "
                                "model again from θ_t (0 = none)")
    shift_calibration_step: float = _f(1.0, "distribution shifting: a calibration round multiplies π_s by "
                                       "(g/q)^(step/ω); 1 = the derivation's step (g reaches q in one round "
                                       "if the fine-tune adopted π_s fully)")
    conditioning: str = _f("none", "none: an unconditional UNet; class: conditioned on the class label (labels drawn "
                           "uniformly when sampling, so unbiased; label_dropout trains the null class); auto: class "
                           "where the data have labels, none where they have not")
    sampling_bias: float = _f(1.0, "MAD sampling bias λ in (0, 1]; 1 = unbiased, else CFG w = 1/λ − 1 (on a "
                              "class-conditional model, whatever --conditioning says)")
    label_dropout: float = _f(0.1, "class-conditional training: fraction of labels replaced by the null class")
    # --- model and training
    resolution: int = _f(16, "image side in pixels; data are resized to it")
    block_out_channels: tuple = _f((16, 32), "UNet2DModel widths, one per resolution level")
    layers_per_block: int = _f(1, "UNet2DModel ResNet layers per block")
    attention: bool = _f(False, "use attention blocks at the lowest resolution")
    mid_block: str = _f("attention", "UNet2DModel's middle block: attention (diffusers' default: two ResNets around "
                        "self-attention), plain (the two ResNets alone) or none")
    prediction_type: str = _f("v_prediction", "epsilon or v_prediction")
    beta_schedule: str = _f("linear", "the diffusion's noise schedule (diffusers' DDPMScheduler beta_schedule, training and "
                            "sampling): linear (DDPM's), scaled_linear or squaredcos_cap_v2 (the cosine schedule of "
                            "Nichol & Dhariwal 2021)")
    train_steps: int = _f(360, "optimizer steps per generation")
    loop_train_steps: int = _f(0, "optimizer steps of θ_t for t >= 1 (0 = train_steps): a loop budget apart from θ_0's, "
                               "so that runs of other budgets share one θ_0; a regime's own budget (accumulate-growing) "
                               "and --finetune-epochs come first")
    batch_size: int = _f(64, "training batch size (global, across processes; divisible by their number)")
    learning_rate: float = _f(2e-3, "AdamW learning rate")
    adam_beta2: float = _f(0.999, "AdamW's second-moment decay β2 (torch's default; 0.99 adapts within a short training)")
    lr_warmup_steps: int = _f(0, "steps of a linear learning-rate ramp from 0 (then constant)")
    loss_weighting: str = _f("none", "per-timestep loss weight: none, or min_snr (Hang et al. 2023, min(SNR, γ) "
                             "over the target's SNR)")
    snr_gamma: float = _f(5.0, "γ of min_snr loss weighting")
    ema_decay: float = _f(0.98, "EMA decay applied at every step after the warm-up (the weights saved and sampled)")
    ema_warmup_steps: int = _f(0, "steps during which the EMA copies the weights (decay 0) before ema_decay applies")
    checkpoint_every: int = _f(200, "save a resumable training checkpoint every this many steps (0 = never)")
    sampling_scheduler: str = _f("ddim", "sampler of S_t (diffusers' schedulers): ddim, dpmsolver (DPM-Solver++ "
                                 "2M) or unipc")
    sampling_steps: int = _f(10, "network steps per sampled image (the sampling scheduler's timesteps)")
    timestep_spacing: str = _f("leading", "how the sampling timesteps are spaced: leading, trailing or linspace")
    sample_batch_size: int = _f(500, "images per sampling chunk (the unit of sampling resume)")
    mixed_precision: str = _f("no", "no, bf16, fp16 (accelerate; training and sampling) or auto (bf16 where the device "
                              "computes bf16 natively, else no)")
    sampling_dtype: str = _f("auto", "autocast dtype of sampling when mixed_precision is no: auto (bfloat16 where the "
                             "device computes bf16 natively, else float32), bfloat16 or float32")
    channels_last: bool = _f(False, "channels_last memory format for the UNet")
    fused_adamw: str = _f("gpu", "where torch's fused AdamW (one kernel for all parameters, the same update) runs: "
                          "gpu (the per-tensor loop on a CPU, the bits of runs from before this field) or always")
    compile: bool = _f(False, "torch.compile the UNet for training (accelerate dynamo_backend=inductor); for GPUs")
    compile_mode: str = _f("default", "torch.compile's mode under --compile: default, reduce-overhead (CUDA graphs "
                           "of the forward and backward), max-autotune or max-autotune-no-cudagraphs")
    log_with: str = _f("none", "tracker for per-generation metrics and sample grids: none, tensorboard, wandb or mlflow "
                       "(accelerate's trackers; tensorboard writes into the run folder's logs/)")
    # --- metrics
    features: str = _f("auto", "feature space of the metrics: auto (lenet with labels, else autoencoder), lenet, "
                       "autoencoder or inception")
    k: int = _f(3, "k of the k-NN radii for precision/recall/density/coverage")
    inception_weights: str = _f("", "local inception-2015-12-05.pt (or env AUTOPHAGY_INCEPTION_WEIGHTS)")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict, strict: bool = False) -> "RunConfig":
        """A config from JSON values (unknown keys ignored); `strict` checks every value's type, for a
        config.json read from a run folder (which may come from anyone)."""
        known = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if strict:
            for name, value in values.items():
                if not _has_type(value, known[name]):
                    raise TypeError(f"{name} is {value!r}, not a {known[name]}")
        if "ddim_steps" in values and "sampling_steps" not in values:  # run folders before round 3
            values["sampling_steps"] = values.pop("ddim_steps")
        for name in ("block_out_channels", "plugins"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    @property
    def fresh_per_generation(self) -> int:
        return self.n_real_fresh or self.n_real

    @property
    def scored_images(self) -> int:
        """How many generated images a generation is scored on (--n-eval, or all of S_t)."""
        return self.n_eval or self.n_synthetic

    def class_conditional(self, num_classes: int) -> bool:
        """Whether θ_t is conditioned on the class, for data with `num_classes` classes (0: unlabeled):
        always under sampling bias (CFG needs it) or --conditioning class, with labels under auto."""
        return self.sampling_bias < 1.0 or self.conditioning == "class" or (self.conditioning == "auto" and num_classes > 0)


def _has_type(value, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "tuple":
        return isinstance(value, (list, tuple)) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value)
    return True


# Presets: values for fields the user did not set. `micro` is for tests (a generation in about a
# second); `cpu` is the default, tuned on a 2-core CPU; `cifar10` is the paper-scale GPU setting.
PRESETS: dict[str, dict] = {
    "micro": dict(
        resolution=8, block_out_channels=(8, 16), layers_per_block=1, train_steps=30, batch_size=16,
        n_real=200, n_real_fresh=100, n_synthetic=100, n_reference=200, n_aux=50, aux_train_steps=10, sampling_steps=4,
        checkpoint_every=10, sample_batch_size=50, learning_rate=2e-3, ema_decay=0.9, n_validation=100,
        loss_weighting="min_snr", snr_gamma=2.0, adam_beta2=0.95, beta_schedule="squaredcos_cap_v2",
        timestep_spacing="trailing", fused_adamw="always", sampling_scheduler="unipc", conditioning="auto",
    ),  # the tests run what the cpu preset runs (its recipe at 8x8, two levels)
    # the dataclass defaults, and what round 3 tuned on the validation split (benchmarks/frontier.py, README
    # "Base model"): min-SNR-5 weighting and UniPC at 10 steps, with 600 steps instead of 360. The fields'
    # own defaults stay what a run folder from before the field existed meant.
    # Neon: its fine-tune at 5 % of the base's training images (30 of 600 steps, lr a tenth of the base's)
    # and w = 4, picked jointly on the validation split (README "Neon at its paper's budget"); its paper's
    # 1.75 % (the fields' own default) moves the merged model by under 1 FID at this scale.
    # Round 3's second base (README "Base model"): class-conditional where the data have labels, sampled with
    # uniformly drawn labels and no guidance (unbiased): validation FID 40 -> 9 at the same 600 steps.
    # SIMS's ω re-picked for it on the validation split (seed 0: ω = 0 / 0.5 / 1 / 2 / 3 gave FID 12.6 / 8.7 /
    # 7.9 / 11.4 / 18.3). Neon re-tuned for it the same way (seeds 0 and 1, fine-tunes of 11 / 30 / 100 steps at a
    # tenth of the learning rate, w 0.5-8): the same 30 steps with w = 2 (validation FID 12.6 -> 10.4, 12.2 -> 8.0;
    # w = 4 gave 11.6 and 8.8, and breaks after 100 steps).
    # Every generation is scored on 1,000 images (as many as the reference set), whatever n_synthetic is: at 250
    # images one θ_0 scored FID 17 to 30 and KID 24 to 90 (README "Metrics"), so a sweep of n_synthetic scored
    # on S_t alone compares its sizes, not its models. The default run (n_synthetic 1,000) is unchanged.
    # The third base (2026-12-06, README "Base model"): a third UNet level (16, 32, 32: the middle block's attention
    # at 4x4), min-SNR-2, AdamW β2 0.95, the cosine schedule sampled with trailing spacing and torch's fused AdamW:
    # validation FID at 400 steps equal to the 600-step base's (3 seeds paired: 13.2 / 10.9 / 9.5 against
    # 12.6 / 12.2 / 9.7) for about 0.64x its training time. Neon keeps 5 % of the base's training images (20
    # steps); its w = 4 has the lower mean validation FID over seeds 0 and 1 (w 2: 10.7 / 8.0, w 4: 10.1 / 7.7,
    # w 8: 13.0 / 12.5; README "The third base").
    "cpu": dict(train_steps=400, block_out_channels=(16, 32, 32), loss_weighting="min_snr", snr_gamma=2.0,
                adam_beta2=0.95, beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing", fused_adamw="always",
                sampling_scheduler="unipc", conditioning="auto", guidance_weight=1.0, neon_aux_train_steps=20,
                neon_weight=4.0, n_eval=1000),
    # MAD's MNIST sizes (n_r = n_s = 60k) on the full 70,000 digits at their own 28x28: reference 8k and
    # validation 2k held out leave a pool of 60k. The second base's recipe (min-SNR-5, UniPC, EMA), wider and
    # trained 10x longer; not tuned on this CPU (a generation costs hours here: a GPU preset, see README).
    # Training in bf16 where it is native: 1.4x faster on an AMX Xeon, bf16 on GPUs; float32 on an AVX2 CPU, which
    # emulates bf16 (README "Presets").
    "mnist-full": dict(
        data="mnist-70k", resolution=28, block_out_channels=(32, 64), train_steps=6000, batch_size=128,
        n_real=60_000, n_real_fresh=6_000, n_synthetic=60_000, n_reference=8_000, n_validation=2_000,
        n_aux=6_000, aux_train_steps=600, sample_batch_size=1000, checkpoint_every=1000, ema_decay=0.995,
        loss_weighting="min_snr", sampling_scheduler="unipc", conditioning="auto", mixed_precision="auto",
    ),
    "cifar10": dict(
        data="uoft-cs/cifar10", resolution=32, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
        attention=True, prediction_type="epsilon", train_steps=100_000, batch_size=128, learning_rate=2e-4,
        ema_decay=0.9999, checkpoint_every=5000, sampling_steps=100, n_real=40_000, n_synthetic=50_000,
        n_reference=8_000, n_validation=2_000, n_aux=10_000, aux_train_steps=5000, sample_batch_size=1000,
        features="inception", mixed_precision="auto", channels_last=True,
    ),
}

BUILTIN_DATA = ("mnist", "digits", "mnist-70k")  # autophagy.data.BUILTIN
INITS = ("scratch", "previous")
PREDICTION_TYPES = ("epsilon", "v_prediction")
MID_BLOCKS = ("attention", "plain", "none")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
MIXED_PRECISION = ("no", "bf16", "fp16", "auto")
FUSED_ADAMW = ("gpu", "always")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile
SAMPLING_DTYPES = ("auto", "bfloat16", "float32")
SAMPLING_SCHEDULERS = ("ddim", "dpmsolver", "unipc")  # autophagy.models.SAMPLE_SCHEDULERS
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
LOSS_WEIGHTINGS = ("none", "min_snr")
CONDITIONINGS = ("none", "class", "auto")
EVALUATION_SPLITS = ("reference", "validation")
TRACKERS = ("none", "tensorboard", "wandb", "mlflow")
FEATURE_SPACE_NAMES = ("auto", "lenet", "autoencoder", "inception")  # autophagy.features.FEATURE_SPACES


def field_names() -> tuple[str, ...]:
    """The names of every config field (what a registration may declare that it uses)."""
    return tuple(f.name for f in dataclasses.fields(RunConfig))


def make_config(preset: str = "cpu", **overrides) -> RunConfig:
    """Dataclass defaults, then the preset, then every override that is not None."""
    if preset not in PRESETS:
        raise ConfigError(f"--preset: {preset!r} is not a preset; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    values["preset"] = preset
    return RunConfig.from_dict(values)


def validate(cfg: RunConfig) -> RunConfig:
    """Every fail-fast that needs no data: one ConfigError naming field, value and what is allowed.
    The regime is checked by loops.regimes.validate_run (the engine knows nothing about loops)."""
    def choose(name, value, allowed):
        if value not in allowed:
            raise ConfigError(f"--{name.replace('_', '-')}: {value!r} is not allowed; choose one of {', '.join(allowed)}")

    def at_least(name, value, low):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"--{name.replace('_', '-')}: {value!r} is not allowed; it must be an integer >= {low}")

    choose("preset", cfg.preset, list(PRESETS))
    choose("features", cfg.features, FEATURE_SPACE_NAMES)
    choose("init", cfg.init, INITS)
    choose("prediction_type", cfg.prediction_type, PREDICTION_TYPES)
    choose("mid_block", cfg.mid_block, MID_BLOCKS)
    choose("beta_schedule", cfg.beta_schedule, BETA_SCHEDULES)
    choose("mixed_precision", cfg.mixed_precision, MIXED_PRECISION)
    choose("fused_adamw", cfg.fused_adamw, FUSED_ADAMW)
    choose("compile_mode", cfg.compile_mode, COMPILE_MODES)
    choose("sampling_dtype", cfg.sampling_dtype, SAMPLING_DTYPES)
    choose("evaluate_on", cfg.evaluate_on, EVALUATION_SPLITS)
    choose("sampling_scheduler", cfg.sampling_scheduler, SAMPLING_SCHEDULERS)
    choose("timestep_spacing", cfg.timestep_spacing, TIMESTEP_SPACINGS)
    choose("loss_weighting", cfg.loss_weighting, LOSS_WEIGHTINGS)
    choose("conditioning", cfg.conditioning, CONDITIONINGS)
    choose("log_with", cfg.log_with, TRACKERS)
    for name in ("generations", "n_real", "n_synthetic", "n_reference", "train_steps", "batch_size", "correction_clusters",
                 "sampling_steps", "sample_batch_size", "k", "resolution", "layers_per_block", "n_aux", "aux_train_steps"):
        at_least(name, getattr(cfg, name), 1)
    for name in ("n_real_fresh", "checkpoint_every", "seed", "n_validation", "ema_warmup_steps", "lr_warmup_steps",
                 "neon_n_aux", "neon_aux_train_steps", "n_eval", "shift_calibration", "loop_train_steps"):
        at_least(name, getattr(cfg, name), 0)
    if cfg.shift_calibration and not cfg.target_distribution:
        raise ConfigError(f"--shift-calibration: {cfg.shift_calibration!r} rounds calibrate a shift to a "
                          f"--target-distribution; give one or leave --shift-calibration at 0")
    if not (0 < cfg.shift_calibration_step < float("inf")):
        raise ConfigError(f"--shift-calibration-step: {cfg.shift_calibration_step!r} is not allowed; it must be "
                          f"a finite number > 0")
    if not (0 < cfg.shift_exaggeration < float("inf")):
        raise ConfigError(f"--shift-exaggeration: {cfg.shift_exaggeration!r} is not allowed; it must be a finite number > 0")
    for name in ("guidance_weight", "neon_weight", "snr_gamma"):
        value = getattr(cfg, name)
        if not (value >= 0 and value < float("inf")):
            raise ConfigError(f"--{name.replace('_', '-')}: {value!r} is not allowed; it must be a finite number >= 0")
    if not (0 <= cfg.correction_strength <= 1):
        raise ConfigError(f"--correction-strength: {cfg.correction_strength!r} is not allowed; it must be in [0, 1]")
    if not (0 < cfg.curation_keep <= 1):
        raise ConfigError(f"--curation-keep: {cfg.curation_keep!r} is not allowed; it must be in (0, 1]")
    target_probabilities(cfg)
    class_weights(cfg)
    if not (0 < cfg.sampling_bias <= 1):
        raise ConfigError(f"--sampling-bias: {cfg.sampling_bias!r} is not allowed; it must be in (0, 1] (1 = unbiased)")
    if not (0 <= cfg.label_dropout < 1):
        raise ConfigError(f"--label-dropout: {cfg.label_dropout!r} is not allowed; it must be in [0, 1)")
    if not (0 <= cfg.neon_learning_rate < 1):
        raise ConfigError(f"--neon-learning-rate: {cfg.neon_learning_rate!r} is not allowed; it must be in [0, 1) (0 = a tenth of --learning-rate)")
    if not (0 <= cfg.finetune_epochs < float("inf")):
        raise ConfigError(f"--finetune-epochs: {cfg.finetune_epochs!r} is not allowed; it must be a finite number >= 0")
    if not (0 <= cfg.finetune_learning_rate < 1):
        raise ConfigError(f"--finetune-learning-rate: {cfg.finetune_learning_rate!r} is not allowed; it must be in [0, 1) "
                          f"(0 = --learning-rate)")
    for name in ("finetune_epochs", "finetune_learning_rate"):
        if getattr(cfg, name) and cfg.init != "previous":
            raise ConfigError(f"--{name.replace('_', '-')}: {getattr(cfg, name)!r} needs --init previous (it sets how "
                              f"generations t >= 1 fine-tune θ_(t-1)); --init is {cfg.init!r}")
    if not (0 < cfg.learning_rate < 1):
        raise ConfigError(f"--learning-rate: {cfg.learning_rate!r} is not allowed; it must be in (0, 1)")
    if not (0 < cfg.adam_beta2 < 1):
        raise ConfigError(f"--adam-beta2: {cfg.adam_beta2!r} is not allowed; it must be in (0, 1)")
    if not (0 <= cfg.ema_decay < 1):
        raise ConfigError(f"--ema-decay: {cfg.ema_decay!r} is not allowed; it must be in [0, 1)")
    if cfg.resolution % (2 ** (len(cfg.block_out_channels) - 1)):
        raise ConfigError(f"--resolution: {cfg.resolution} is not allowed; it must be divisible by "
                          f"{2 ** (len(cfg.block_out_channels) - 1)} for {len(cfg.block_out_channels)} UNet levels")
    if cfg.data not in BUILTIN_DATA and cfg.data.startswith((".", "/", "~")) and not Path(cfg.data).expanduser().is_dir():
        raise ConfigError(f"--data: {cfg.data!r} is not a directory; give mnist, digits, mnist-70k, a save_to_disk folder or an image folder")
    if cfg.inception_weights and not Path(cfg.inception_weights).is_file():
        raise ConfigError(f"--inception-weights: {cfg.inception_weights!r} is not a file")
    return cfg


# fields that hold one comma-separated number per class (a sweep separates their values by ";")
PER_CLASS_FIELDS = ("class_weights", "target_distribution")


def _per_class(flag: str, text: str, what: str) -> tuple[float, ...]:
    """A comma-separated number per class (--class-weights, --target-distribution); () when empty."""
    if not text:
        return ()
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a comma-separated list of numbers (one {what} per class)") from None


def class_weights(cfg: RunConfig) -> tuple[float, ...]:
    """--class-weights as numbers (empty: ()), refused unless they are weights >= 0 with a positive sum."""
    w = _per_class("--class-weights", cfg.class_weights, "weight")
    if w and (not all(0 <= v < float("inf") for v in w) or sum(w) <= 0):
        raise ConfigError(f"--class-weights: {cfg.class_weights!r} is not allowed; give finite weights >= 0 "
                          f"with a positive sum")
    return w


def target_probabilities(cfg: RunConfig) -> tuple[float, ...]:
    """--target-distribution as probabilities (empty: ()), refused unless it is a distribution."""
    q = _per_class("--target-distribution", cfg.target_distribution, "probability")
    if q and (min(q) < 0 or abs(sum(q) - 1) > 1e-6 or not all(v == v for v in q)):
        raise ConfigError(f"--target-distribution: {cfg.target_distribution!r} is not a distribution; give "
                          f"probabilities >= 0 that sum to 1 (they sum to {sum(q):.6g})")
    return q


def config_differences(saved: RunConfig, wanted: RunConfig) -> list[str]:
    """Fields that differ between two configs, except `generations` (a run may be extended)."""
    a, b = dataclasses.asdict(saved), dataclasses.asdict(wanted)
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k != "generations" and a[k] != b[k]]


def cache_dir() -> Path:
    """Caches shared across runs (the lenet extractor): $AUTOPHAGY_CACHE or ~/.cache/autophagy (also when
    the variable is set but empty, which would otherwise mean the working directory)."""
    return Path(os.environ.get("AUTOPHAGY_CACHE") or Path.home() / ".cache" / "autophagy")

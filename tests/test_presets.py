"""Presets validate; the paper-scale cifar10 preset builds its model here without downloading anything."""
import pytest

from autophagy.config import PRESETS, make_config, validate
from autophagy.models import build_unet, parameter_count


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_validate(preset):
    cfg = validate(make_config(preset, regime="sims", generations=10))
    assert cfg.preset == preset


def test_cifar10_preset_builds_a_paper_size_unet(capsys):
    cfg = validate(make_config("cifar10", regime="sims", generations=5))
    assert (cfg.resolution, cfg.features, cfg.mixed_precision) == (32, "inception", "auto")
    assert cfg.n_synthetic >= 10_000 and cfg.data == "uoft-cs/cifar10"
    unet = build_unet(cfg, channels=3)
    n = parameter_count(unet)
    print(f"cifar10 UNet2DModel: {n / 1e6:.1f}M parameters")
    assert 30e6 < n < 80e6  # DDPM's CIFAR-10 model has 35.7M
    assert unet.config.sample_size == 32 and unet.config.in_channels == 3


def test_cpu_preset_is_the_default():
    assert make_config().preset == "cpu" and make_config() == make_config("cpu")


def test_feature_space_names_match_the_registry_and_validation_imports_nothing_heavy():
    import subprocess
    import sys

    from autophagy.config import FEATURE_SPACE_NAMES
    from autophagy.features import FEATURE_SPACES
    assert tuple(FEATURE_SPACES) == FEATURE_SPACE_NAMES
    code = "import sys, autophagy.config as c; c.validate(c.make_config()); assert 'diffusers' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize("mid_block", ["attention", "plain", "none"])
def test_mid_block_choice_builds_that_unet(mid_block):
    import torch
    cfg = validate(make_config("micro", mid_block=mid_block))
    unet = build_unet(cfg, channels=1, num_classes=10)
    attentions = [m for m in unet.modules() if type(m).__name__ == "Attention"]
    assert (unet.mid_block is None) == (mid_block == "none")
    assert len(attentions) == (1 if mid_block == "attention" else 0)  # micro has no attention elsewhere
    x = torch.randn(2, 1, cfg.resolution, cfg.resolution)
    out = unet(x, torch.tensor([3, 700]), class_labels=torch.tensor([1, 10])).sample
    assert out.shape == x.shape


@pytest.mark.parametrize("field,value", [("mid_block", "deep"), ("fused_adamw", "never"),
                                         ("compile_mode", "fast"), ("beta_schedule", "cosine")])
def test_bad_model_choices_are_refused_by_name(field, value):
    from autophagy.config import ConfigError
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')}: '{value}' is not allowed"):
        validate(make_config("micro", **{field: value}))


@pytest.mark.parametrize("compile,mode,backend", [(False, "reduce-overhead", "NO"), (True, "default", "INDUCTOR"),
                                                  (True, "reduce-overhead", "INDUCTOR")])
def test_compile_mode_reaches_accelerate(compile, mode, backend):
    from accelerate.state import AcceleratorState
    from autophagy.training import make_accelerator
    AcceleratorState._reset_state(True)
    try:
        plugin = make_accelerator(validate(make_config("micro", compile=compile, compile_mode=mode))).state.dynamo_plugin
    finally:
        AcceleratorState._reset_state(True)
    assert str(plugin.backend.name) == backend
    assert plugin.mode == (mode if compile else "default")


def test_a_compiled_training_returns_the_network_itself(monkeypatch):
    """Under --compile the trainer hands back the UNet, not torch.compile's wrapper, so sampling runs eager
    (dynamo's eager backend stands in for inductor: the same wrapping, no kernel compilation)."""
    import numpy as np
    from accelerate.state import AcceleratorState
    from accelerate.utils import TorchDynamoPlugin
    from diffusers import UNet2DModel
    from autophagy import training
    monkeypatch.setattr(training, "TorchDynamoPlugin", lambda backend, **kw: TorchDynamoPlugin(
        backend="eager" if backend == "inductor" else backend, **kw))
    cfg = validate(make_config("micro", compile=True, checkpoint_every=0))
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (16, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, 16)
    AcceleratorState._reset_state(True)
    try:
        model, _ = training.train_diffusion(build_unet(cfg, 1, 10), images, labels, cfg, 2, (0, 0, 0))
    finally:
        AcceleratorState._reset_state(True)
    assert type(model) is UNet2DModel


def test_fused_adamw_on_the_cpu_is_the_same_update(monkeypatch):
    """`--fused-adamw always` builds torch's fused AdamW on the CPU (the default keeps the per-tensor loop),
    and its step is the per-tensor loop's to float32 rounding (later steps drift apart as any two
    roundings of a training run do, so one step is compared)."""
    import numpy as np
    import torch
    from autophagy import training
    built = []
    real = torch.optim.AdamW
    monkeypatch.setattr(training.torch.optim, "AdamW", lambda *a, **k: built.append(k["fused"]) or real(*a, **k))
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (64, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, 64)
    weights = {}
    for choice in ("gpu", "always"):
        cfg = validate(make_config("micro", fused_adamw=choice))
        torch.manual_seed(0)
        model = build_unet(cfg, 1, 10)
        start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        model, _ = training.train_diffusion(model, images, labels, cfg, 1, (0, 0, 0))
        weights[choice] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert built == [False, True]
    moved = (weights["gpu"] - start).abs().max()
    assert moved > 1e-4  # the step did move the weights
    assert (weights["gpu"] - weights["always"]).abs().max() < 1e-4 * moved


def test_adam_beta2_reaches_the_optimizer_and_is_refused_outside_0_1(monkeypatch):
    import numpy as np
    import torch
    from autophagy import training
    from autophagy.config import ConfigError
    built = []
    real = torch.optim.AdamW
    monkeypatch.setattr(training.torch.optim, "AdamW", lambda *a, **k: built.append(k["betas"]) or real(*a, **k))
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (16, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, 16)
    for beta2 in (0.999, 0.99):
        cfg = validate(make_config("micro", adam_beta2=beta2, checkpoint_every=0))
        training.train_diffusion(build_unet(cfg, 1, 10), images, labels, cfg, 1, (0, 0, 0))
    assert built == [(0.9, 0.999), (0.9, 0.99)]
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match=r"--adam-beta2: .* must be in \(0, 1\)"):
            validate(make_config("micro", adam_beta2=bad))


@pytest.mark.parametrize("environment,shown", [({}, True), ({"TQDM_DISABLE": "1"}, False)])
def test_the_trainers_bar_follows_tqdms_environment(environment, shown, tmp_path):
    """TQDM_DISABLE=1 silences the trainer's bar (benchmark workers' logs); an explicit disable= overrode it."""
    import os
    import subprocess
    import sys
    code = ("import numpy as np\n"
            "from autophagy.config import make_config, validate\n"
            "from autophagy.models import build_unet\n"
            "from autophagy.training import train_diffusion\n"
            "cfg = validate(make_config('micro', checkpoint_every=0))\n"
            "rng = np.random.default_rng(0)\n"
            "images, labels = rng.integers(0, 255, (16, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, 16)\n"
            "train_diffusion(build_unet(cfg, 1, 10), images, labels, cfg, 2, (0, 0, 0), description='barcheck')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")} | environment
    env["AUTOPHAGY_PROCESSES"] = str(tmp_path / "processes")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert ("barcheck" in done.stderr) == shown


def test_the_beta_schedule_is_the_training_and_the_sampling_schedule():
    """--beta-schedule squaredcos_cap_v2 trains and samples on the cosine schedule (the default keeps DDPM's
    linear one); a sampler built from the training scheduler must not fall back to linear."""
    from autophagy.models import build_sample_scheduler, build_train_scheduler
    linear, cosine = (validate(make_config("cpu", beta_schedule=b)) for b in ("linear", "squaredcos_cap_v2"))
    assert build_train_scheduler(linear).alphas_cumprod[500] < 0.1      # DDPM linear: about 0.08 at t = 500
    assert build_train_scheduler(cosine).alphas_cumprod[500] > 0.4      # cosine: about 0.49
    for cfg in (linear, cosine):
        assert build_sample_scheduler(cfg).config.beta_schedule == cfg.beta_schedule
        assert (build_sample_scheduler(cfg).alphas_cumprod == build_train_scheduler(cfg).alphas_cumprod).all()

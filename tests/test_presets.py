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
    assert (cfg.resolution, cfg.features, cfg.mixed_precision) == (32, "inception", "bf16")
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

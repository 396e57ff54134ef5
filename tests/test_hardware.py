"""Defaults decided by a capability probe; guidance combined in float32 under bf16 autocast."""
import json
from types import SimpleNamespace

import pytest
import torch

import autophagy.hardware as hardware
from autophagy.sampling import GuidedDenoiser, combine
from loops.run import run_loop


def test_auto_resolves_by_the_probe(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: False)
    assert hardware.resolve_sampling_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: True)
    assert hardware.resolve_sampling_dtype("auto", "cpu") == "bfloat16"
    assert hardware.resolve_sampling_dtype("float32", "cpu") == "float32"  # an explicit choice stays


@pytest.mark.parametrize("native", [False, True])
def test_mixed_precision_auto_trains_in_bf16_only_where_it_is_native(monkeypatch, native):
    from accelerate.state import AcceleratorState
    from autophagy.config import make_config, validate
    from autophagy.training import make_accelerator
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: native)
    assert hardware.resolve_mixed_precision("auto", "cpu") == ("bf16" if native else "no")
    assert hardware.resolve_mixed_precision("fp16", "cpu") == "fp16"   # an explicit choice stays
    AcceleratorState._reset_state(True)
    try:
        accelerator = make_accelerator(validate(make_config("mnist-full")))   # the preset asks for auto
        assert accelerator.mixed_precision == ("bf16" if native else "no")
    finally:
        AcceleratorState._reset_state(True)


def test_cpu_probe_reads_the_bf16_flags(monkeypatch):
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: {"flags": "fpu sse avx2 fma"})
    assert not hardware.cpu_native_bf16()
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: {"flags": "fpu avx2 avx512f avx512_bf16"})
    assert hardware.cpu_native_bf16()
    line = hardware.describe()
    assert "capability" in line and "native bf16" in line


@pytest.mark.parametrize("native", [False, True])
def test_rows_record_the_resolved_dtype_and_config_keeps_auto(micro, tmp_path, monkeypatch, native):
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: native)
    out = tmp_path / "run"
    run_loop(micro(generations=1, sampling_dtype="auto"), out)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["sampling_dtype"] == ("bfloat16" if native else "float32")
    assert row["mixed_precision"] == "no"   # micro trains in float32 whatever the machine
    assert json.loads((out / "config.json").read_text())["sampling_dtype"] == "auto"


class _Net(torch.nn.Module):
    """A stand-in network: a 1x1 convolution, whose output autocast makes bf16."""

    def __init__(self, weight: float, classes: int | None = None):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1, bias=False)
        torch.nn.init.constant_(self.conv.weight, weight)
        self.config = SimpleNamespace(num_class_embeds=classes)

    def forward(self, x, t, class_labels=None):
        out = self.conv(x)
        if class_labels is not None:
            out = out + (class_labels == self.config.num_class_embeds - 1).float().view(-1, 1, 1, 1) * 1e-3
        return SimpleNamespace(sample=out)


def test_sims_combination_is_float32_under_bf16_autocast():
    x = torch.linspace(0.5, 1.5, 64).view(1, 1, 8, 8)
    base, aux = _Net(1.0), _Net(1.0 + 2 ** -6)  # outputs differ by less than bf16 resolves after x (1 + ω)
    omega = 2.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = GuidedDenoiser(base, aux, guidance_weight=omega)(x, 10)
        a, b = base(x, 10).sample, aux(x, 10).sample
    assert a.dtype == torch.bfloat16  # autocast is on for the networks
    expected = (1 + omega) * a.float() - omega * b.float()
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    rounded = ((1 + omega) * a - omega * b).float()  # the same combination in bf16
    assert not torch.equal(out, rounded)


def test_cfg_combination_is_float32_under_bf16_autocast():
    x = torch.linspace(0.5, 1.5, 128).view(2, 1, 8, 8)
    labels = torch.tensor([1, 2])
    net = _Net(1.0, classes=11)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = GuidedDenoiser(net, class_guidance_weight=3.0)(x, 10, labels)
        cond = net(x, 10, labels).sample
        uncond = net(x, 10, torch.full_like(labels, 10)).sample
    assert out.dtype == torch.float32
    assert torch.equal(out, combine(cond, uncond, 3.0))
    assert torch.equal(out, 4.0 * cond.float() - 3.0 * uncond.float())

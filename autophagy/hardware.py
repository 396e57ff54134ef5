"""What the machine can do, decided by probing it, never by the machine a default was tuned on.

`native_bf16(device)` says whether bfloat16 runs in hardware: on CUDA, `torch.cuda.is_bf16_supported()`;
on an x86 CPU, the AVX512-BF16 or AMX-BF16 instructions (without them oneDNN emulates bf16 and a
2-core AVX2 machine samples about 9x slower in bf16 than in fp32); on Arm, the BF16 extension.
`resolve_sampling_dtype` and `resolve_mixed_precision` turn an `auto` into what this device does well.
`describe()` names the machine beside every timing a benchmark prints.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX512-BF16 / AMX, Arm's BF16 extension


@lru_cache(maxsize=None)
def _cpuinfo() -> dict:
    """model name and flags of the first CPU in /proc/cpuinfo ({} where there is none)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "flags", "features") and key not in info:
                    info[key] = value.strip()
                if not line.strip() and info:
                    break
    except OSError:
        pass
    return info


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_capability() -> str:
    """torch's name for the widest vector ISA its CPU kernels use here (AVX2, AVX512, ...)."""
    return torch.backends.cpu.get_cpu_capability()


def cpu_native_bf16() -> bool:
    flags = set((_cpuinfo().get("flags", "") + " " + _cpuinfo().get("features", "")).split())
    if flags:
        return any(flag in flags for flag in BF16_CPU_FLAGS)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # no /proc/cpuinfo: ask oneDNN


def native_bf16(device_type: str) -> bool:
    """True where `device_type` ('cpu' or 'cuda') computes bfloat16 in hardware."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return cpu_native_bf16()
    return False


def resolve_sampling_dtype(requested: str, device_type: str) -> str:
    """'auto' -> 'bfloat16' where bf16 is native on the device, else 'float32'; other values as given."""
    if requested != "auto":
        return requested
    return "bfloat16" if native_bf16(device_type) else "float32"


def resolve_mixed_precision(requested: str, device_type: str) -> str:
    """'auto' -> 'bf16' where bf16 is native on the device, else 'no' (float32); other values as given."""
    if requested != "auto":
        return requested
    return "bf16" if native_bf16(device_type) else "no"


def describe() -> str:
    """One line naming the machine: CPU model, cores, torch's CPU capability, native bf16, GPU, torch."""
    line = (f"CPU {cpu_model()}, {os.cpu_count()} cores, torch CPU capability {cpu_capability()}, "
            f"native bf16 {'yes' if cpu_native_bf16() else 'no'}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")
    if torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name()} (bf16 {'yes' if native_bf16('cuda') else 'no'})"
    return line

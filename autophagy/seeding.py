"""Seeds derive from integers only (run seed, generation, purpose, rank, step), never from hash().

A resumed run therefore sees the same data order, noise and samples as an uninterrupted one.
"""
from __future__ import annotations

import numpy as np
import torch

# Each use of randomness has a fixed integer, so the streams never overlap and never move.
# Retired integers, never to be reused: 6 (aux_train) and 8 (labels) were never drawn from.
PURPOSES = {
    "split": 1, "real_draw": 2, "train": 3, "sample": 4, "aux_sample": 5,
    "lenet": 7, "reuse": 9, "init": 10, "plain_sample": 11, "subset": 12, "subsample": 13, "shift": 14,
    "rejection": 15, "calibration_sample": 16,
}


def seed_for(seed: int, purpose: str, *ints: int) -> int:
    """A 63-bit seed from the run seed, a purpose and any integers (generation, rank, step, chunk)."""
    entropy = [int(seed), PURPOSES[purpose], *[int(i) for i in ints]]
    return int(np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32).astype(np.uint64) @ [1 << 31, 1])


def rng_for(seed: int, purpose: str, *ints: int) -> np.random.Generator:
    return np.random.default_rng(seed_for(seed, purpose, *ints))


def torch_generator(seed: int, purpose: str, *ints: int, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed_for(seed, purpose, *ints))

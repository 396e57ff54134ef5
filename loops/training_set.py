"""A regime's answer, D_t by index (`TrainingSet`), and the check every one passes before training:
a regime (a plug-in's too) can never put a validation or reference image, a made-up index or a future
generation into a training set."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autophagy.config import ConfigError


@dataclass(frozen=True)
class TrainingSet:
    real_indices: np.ndarray                 # indices into the dataset's images (members of the pool)
    synthetic_generations: tuple[int, ...]   # generations whose S_t are included
    synthetic_indices: dict | None = None    # {generation: indices into its S_t} to keep a subset; None = all
    info: dict | None = None                 # extra fields for the metrics row (e.g. what curation kept)
    train_steps: int | None = None           # optimizer steps for θ_t; None = the config's train_steps
    replaced: dict | None = None             # {generation: uint8 images that replace its chosen part of S_g,
                                             #  same shape} (a correction of the samples, e.g. self-correcting)

    def synthetic_parts(self):
        """(generation, indices into S_g or None for all of it) for every synthetic part of D_t."""
        chosen = self.synthetic_indices or {}
        return [(g, chosen.get(g)) for g in self.synthetic_generations]



def _bad(name: str, t: int, problem: str) -> ConfigError:
    return ConfigError(f"--regime: {name!r} built a training set for generation {t} that {problem}")


def check_training_set(name: str, t: int, ts: TrainingSet, pool_members: np.ndarray, size_of, shape_of=None) -> None:
    """Refuse a TrainingSet that is not one: wrong types, real images outside the training pool (the
    validation and reference splits can never be trained on), synthetic parts of generations that do
    not exist yet or indices outside them (`size_of(g)`: |S_g|), replacement images of another shape
    than what they replace (`shape_of(g)`: the shape of one image of S_g)."""
    if not isinstance(ts, TrainingSet):
        raise _bad(name, t, f"is a {type(ts).__name__}, not a TrainingSet")
    real = ts.real_indices
    if not isinstance(real, np.ndarray) or real.ndim != 1 or (len(real) and not np.issubdtype(real.dtype, np.integer)):
        raise _bad(name, t, f"has real_indices of type {type(real).__name__}; give a 1-d integer numpy array")
    outside = real[~np.isin(real, pool_members)]
    if len(outside):
        raise _bad(name, t, f"names {len(outside)} real image(s) outside the training pool (e.g. index "
                            f"{int(outside[0])}); use indices from draws.draw(...) only")
    if not isinstance(ts.synthetic_generations, tuple):
        raise _bad(name, t, f"has synthetic_generations of type {type(ts.synthetic_generations).__name__}; give a tuple")
    if ts.train_steps is not None and (not isinstance(ts.train_steps, (int, np.integer)) or ts.train_steps < 1):
        raise _bad(name, t, f"asks for {ts.train_steps!r} training steps; give an integer >= 1 or None")
    if ts.synthetic_indices is not None and not isinstance(ts.synthetic_indices, dict):
        raise _bad(name, t, f"has synthetic_indices of type {type(ts.synthetic_indices).__name__}; give a dict")
    for g, indices in ts.synthetic_parts():
        if not isinstance(g, (int, np.integer)) or not 0 <= g < t:
            raise _bad(name, t, f"uses the synthetic set of generation {g!r}; only generations 0..{t - 1} exist")
        if indices is None:
            continue
        if not isinstance(indices, np.ndarray) or indices.ndim != 1 or (len(indices) and not np.issubdtype(indices.dtype, np.integer)):
            raise _bad(name, t, f"keeps a subset of S_{g} of type {type(indices).__name__}; give a 1-d integer numpy array")
        if len(indices) and (indices.min() < 0 or indices.max() >= size_of(g)):
            raise _bad(name, t, f"keeps indices outside S_{g} (0..{size_of(g) - 1})")
    if ts.replaced is not None and not isinstance(ts.replaced, dict):
        raise _bad(name, t, f"has replaced of type {type(ts.replaced).__name__}; give a dict")
    for g, images in (ts.replaced or {}).items():
        if g not in ts.synthetic_generations:
            raise _bad(name, t, f"replaces images of S_{g!r}, which it does not train on")
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            raise _bad(name, t, f"replaces S_{g} by {type(images).__name__} {getattr(images, 'dtype', '')}; give uint8 images")
        chosen = dict(ts.synthetic_parts())[g]
        expected = (size_of(g) if chosen is None else len(chosen), *(shape_of(g) if shape_of else images.shape[1:]))
        if images.shape != expected:
            raise _bad(name, t, f"replaces S_{g} by images of shape {images.shape}; the part it replaces is {expected}")

"""Generation 0 shared across runs: it depends on the data, the seed, the training config and the
sampler with the fields it reads (a SIMS run draws S_0 with the SIMS sampler), never on the regime.
Runs with the same key reuse one finished gen_000 (copied, DONE last), its row relabelled with the copying run's
regime labels (loops.rows.regime_labels)."""
from __future__ import annotations

import dataclasses
import json
import shutil

from autophagy.config import RunConfig
from autophagy import layout
from autophagy.rundir import RunDir
from loops.artifacts import STATS_FILE
from loops.regimes import as_read, regime_fields, sampler_of
from loops.rows import regime_labels
from loops.samplers import SAMPLERS, sampler_fields


def generation_zero_key(cfg: RunConfig) -> str:
    """Everything generation 0 depends on: the config without the regime, the generation count, the
    fields regimes read and those of how θ_t fine-tunes (both act from generation 1 on) and the fields of
    samplers other than this one."""
    sampler = sampler_of(cfg)
    values = dataclasses.asdict(dataclasses.replace(cfg, regime="", generations=1, sampler=sampler))
    unused = (regime_fields() | sampler_fields() | FROM_GENERATION_ONE) - set(SAMPLERS[sampler].uses)
    return json.dumps({k: v for k, v in values.items() if k not in unused}, sort_keys=True)


# Fields of the loop that act from generation 1 on: how θ_t starts, fine-tunes and how long it trains (θ_0
# always trains from scratch for train_steps).
FROM_GENERATION_ONE = frozenset({"init", "finetune_epochs", "finetune_learning_rate", "loop_train_steps"})

# Fields that act only after θ_0 is trained: how it is sampled and how the samples are scored. (Not
# here: anything that changes R_0 or the training, e.g. n_validation, which moves the split.)
AFTER_TRAINING = frozenset({"n_synthetic", "sampling_scheduler", "sampling_steps", "timestep_spacing",
                            "sample_batch_size", "sampling_dtype", "evaluate_on", "features", "k",
                            "inception_weights", "log_with"})


def base_key(cfg: RunConfig) -> str:
    """What θ_0 depends on: the generation-0 key without the sampler, every field a sampler reads
    (samplers only use θ_0 once it is trained) and the fields of sampling and scoring (AFTER_TRAINING):
    a tuning sweep on the validation split, or over sampling steps, trains θ_0 once."""
    values = json.loads(generation_zero_key(cfg))
    for name in sampler_fields() | AFTER_TRAINING | {"sampler"}:
        values.pop(name, None)
    return json.dumps(values, sort_keys=True)


def model_key(cfg: RunConfig) -> str:
    """What all of generation 0's trained models (θ_0 and any auxiliary model) depend on: the generation-0
    key without the fields its sampler declares sampling-only (SIMS's ω, Neon's w), which only combine
    them. From generation 1 on nothing is shared: D_t holds S_{t-1}, which those fields drew."""
    values = json.loads(generation_zero_key(cfg))
    for name in SAMPLERS[sampler_of(cfg)].sampling_only_fields(cfg):
        values.pop(name, None)
    return json.dumps(values, sort_keys=True)


def _trained(folder) -> bool:
    """A model folder that training wrote (its stats say how), not one combined from others (Neon's merged
    model depends on w and is never shared)."""
    try:
        return bool(json.loads((folder / STATS_FILE).read_text()))
    except (OSError, ValueError):
        return False


def share_models(source: RunDir, target: RunDir, cfg: RunConfig, only_base: bool = False) -> bool:
    """Copy the trained models of a finished gen_000 into a `target` that has not finished generation 0:
    θ_0 alone (`only_base`, a run with another sampler) or every trained model (the same models, e.g.
    another ω); no combined model, no samples, no row. The target's own run then loads them and only
    trains what is missing."""
    if not source.is_done(0) or target.is_done(0):
        return False
    with target.locked():
        target.check_or_write_config(cfg, resolve=as_read)
        target.gen(0).mkdir(parents=True, exist_ok=True)
        for folder in sorted(p for p in source.gen(0).iterdir() if p.is_dir() and _trained(p)):
            if (only_base and folder.name != layout.MODEL) or (target.gen(0) / folder.name).exists():
                continue
            partial = target.gen(0) / f".{folder.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(folder, partial)
            partial.rename(target.gen(0) / folder.name)
    return True


def reuse_generation_zero(source: RunDir, target: RunDir, cfg: RunConfig) -> bool:
    """Copy a finished gen_000 (and the run-level caches) from `source` into a fresh `target`."""
    if not source.is_done(0) or target.is_done(0):
        return False
    with target.locked():
        target.check_or_write_config(cfg, resolve=as_read)
        for path in (source.baseline_path, source.reference_features_path):
            if path.exists() and not (target.root / path.name).exists():
                shutil.copy2(path, target.root / path.name)
        shutil.rmtree(target.gen(0), ignore_errors=True)
        shutil.copytree(source.gen(0), target.gen(0), ignore=shutil.ignore_patterns("DONE", "work", "row.json"))
        row = next(r for r in source.read_rows() if r["generation"] == 0)
        target.append_row({**row, **regime_labels(cfg), "reused_from": str(source.root)})
        target.mark_done(0)
    return True

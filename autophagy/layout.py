"""The run folder's contract, written down once: file names, the metric keys of a row, and which config
fields make an experiment. Standard library only, so `analysis` (which never imports torch) reads run
folders with the very names `loops` writes them with.

    config.json            resolved config; a rerun with a different config refuses
    metrics.jsonl          one JSON row per finished generation
    baseline.json          the real-vs-real floor (training pool vs reference), once per run
    reference_features.npz cached features of the reference set
    AUTOPHAGY_RUN          marker: this folder was made by autophagy (--overwrite deletes nothing else)
    gen_003/model/         save_pretrained output (aux_model/, merged_model/ for the SIMS and Neon samplers)
    gen_003/samples.npz    S_t as uint8 with labels where known
    gen_003/plain_samples.npz  a guided sampler's unguided health draws of θ_t (scored as plain_*)
    gen_003/grid.png       a sample grid
    gen_003/DONE           written last, atomically
    gen_003/work/          checkpoints and sample chunks of an unfinished generation
"""
from __future__ import annotations

import json
from pathlib import Path

CONFIG = "config.json"
METRICS_FILE = "metrics.jsonl"
BASELINE = "baseline.json"
REFERENCE_FEATURES = "reference_features.npz"
MARKER = "AUTOPHAGY_RUN"
MODEL, AUX_MODEL, MERGED_MODEL = "model", "aux_model", "merged_model"
SAMPLES, HEALTH_SAMPLES, GRID, DONE, WORK = "samples.npz", "plain_samples.npz", "grid.png", "DONE", "work"
EVAL_SAMPLES = "eval_samples.npz"   # images drawn past S_t only to be scored (--n-eval > --n-synthetic)


def generation_dir(root: Path | str, t: int) -> Path:
    """gen_003: zero-padded, never parsed back out of a name."""
    return Path(root) / f"gen_{t:03d}"


def parse_rows(text: str) -> list[dict]:
    """The rows of a metrics.jsonl text; a line that is not a row with an integer generation raises
    ValueError naming its line number."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("generation"), int) or isinstance(row["generation"], bool):
            raise ValueError(f"line {number} is damaged (not a metrics row with an integer generation)")
        rows.append(row)
    return rows


# --- the metric keys of a row
METRIC_KEYS = ("fid", "kid", "precision", "recall", "density", "coverage")   # autophagy.metrics.compute_metrics
CLASS_KEYS = ("class_histogram", "classes_covered", "class_entropy")         # lenet space only
HEALTH_KEYS = (*METRIC_KEYS, *CLASS_KEYS)      # scored again on a guided run's unguided draws, as plain_<key>
HEALTH_PREFIX = "plain_"                       # row keys stay as they were: plain_* is the model's own health
REGIME_LABEL_KEYS = ("uses", "own_sampler", "control")  # set by the run's regime (loops.rows.regime_labels)
DISTRIBUTION_KEYS = ("target_tv", "target_fid", "rejection_target_tv", "rejection_target_fid")  # distribution shifting
# what reports tabulate and plot, in this order
REPORT_METRICS = (*METRIC_KEYS, "classes_covered", "memorization", "target_tv", "target_fid",
                  *(HEALTH_PREFIX + k for k in ("fid", "precision", "recall", "coverage", "target_tv", "target_fid")))

# --- which config fields make an experiment
# fields that never make two runs different experiments (how a run was carried out, not what it measured)
BOOKKEEPING_FIELDS = frozenset({"seed", "generations", "num_processes", "plugins", "checkpoint_every",
                                "sample_batch_size", "overwrite", "skip_unreadable", "log_with"})


def experiment_identity(config: dict) -> str:
    """The one definition of "the same experiment": the config without its bookkeeping fields, as text.
    Two run folders with the same identity and seed are one run twice."""
    return json.dumps({k: v for k, v in config.items() if k not in BOOKKEEPING_FIELDS}, sort_keys=True)

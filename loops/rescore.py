"""Recompute every generation's metrics from its saved samples, in the run's feature space (after the
feature extractor changed, say): timings and counts are kept, metric values replaced."""
from __future__ import annotations

from pathlib import Path

from autophagy.rundir import RunDir, RunFolderError
from autophagy.seeding import seed_for
from loops import rows
from loops.regimes import RealDraws
from loops.run import load_data_for, resolve_config
from loops.scoring import build_scorer


def rescore_run(out: Path | str, log=print) -> RunDir:
    """Rescore run folder `out` (its plug-ins must be loaded: the CLI's --plugin, checked against config.json)."""
    rd = RunDir(out)
    cfg = rd.saved_config()
    if cfg is None:
        raise RunFolderError(f"rescore: {str(rd.root)!r} is not a run folder (no config.json)")
    cfg = resolve_config(cfg)
    real = load_data_for(cfg)
    with rd.locked():
        rd.restore_rows(log)
        rd.reference_features_path.unlink(missing_ok=True)
        rd.baseline_path.unlink(missing_ok=True)
        scorer = build_scorer(cfg, rd, real, RealDraws(real.pool, cfg).draw(0))
        rescored = []
        for row in rd.read_rows():
            t = row["generation"]
            images = rd.load_scored_samples(t, cfg.scored_images)
            row = {**row, **scorer.score(images, seed_for(cfg.seed, "subset", t)), "feature_id": scorer.extractor.identity}
            if "plain_fid" in row:  # the model-health draws: rescored too, or dropped (never left measured
                health = rd.load_health_samples(t)  # in another network than the row's feature_id says)
                if health is not None:
                    row.update(rows.health_scores(scorer.score(health, seed_for(cfg.seed, "subset", t))))
                else:
                    row = {k: v for k, v in row.items() if not k.startswith("plain_")}
                    log(f"generation {t}: plain_* dropped, its unguided samples were not kept (a run older than "
                        f"plain_samples.npz)")
            rescored.append(row)
        for row in rescored:  # metrics.jsonl and each generation's row.json alike
            rd.append_row(row)
    log(f"rescored {len(rescored)} generations of {rd.root} with {scorer.extractor.identity}")
    return rd

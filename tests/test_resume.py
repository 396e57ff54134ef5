"""A run SIGKILLed at any point and rerun gives the same metrics and the same samples, byte for byte."""
import json

import numpy as np


from tests.conftest import run_cli

METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "class_histogram", "memorization", "plain_fid",
           "plain_recall", "ema_decay_effective", "cost_train_images", "cost_sample_nfe", "sampling_dtype")
ARGS = ["run", "--regime", "sims", "--generations", "2", "--preset", "micro"]


def results(folder):
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    samples = [(folder / f"gen_{t:03d}" / "samples.npz").read_bytes() for t in range(2)]
    return [{k: r[k] for k in METRICS} for r in rows], samples


def test_killed_everywhere_then_resumed_equals_uninterrupted(tmp_path):
    """Also on a cold cache: the run that builds the data arrays and the extractor uses them as reloaded."""
    reference = tmp_path / "uninterrupted"
    code, _, err = run_cli(*ARGS, "--out", reference)  # a process like the killed ones (same allocation history)
    assert code == 0, err[-2000:]

    killed = tmp_path / "killed"
    # generation 0 done; gen 1 base training after its checkpoint; aux fine-tuning; a sample chunk; a plain
    # (model health) chunk; metrics
    for point in ["done:0", "train:1:0:15", "train:1:1:5", "sample:1:0:0", "sample:1:2:0", "metrics:1"]:
        code, _, err = run_cli(*ARGS, "--out", killed, env={"AUTOPHAGY_KILL_AT": point})
        assert code == -9, (point, err[-2000:])  # really SIGKILLed there
    assert not (killed / "gen_001" / "DONE").exists()
    code, _, err = run_cli(*ARGS, "--out", killed)
    assert code == 0, err[-2000:]

    ours, ours_samples = results(killed)
    ref, ref_samples = results(reference)
    assert ours == ref
    assert ours_samples == ref_samples
    with np.load(killed / "gen_001" / "samples.npz") as z:
        assert len(z["images"]) == 100


def test_a_calibrated_shift_killed_in_each_round_resumes_to_the_same_bytes(tmp_path):
    """Each calibration round fine-tunes an auxiliary model and draws guided samples; a kill inside any
    of them resumes to the uninterrupted run's rows and samples (round k's correction is recomputed
    from round k−1's saved draws)."""
    args = ["run", "--regime", "sims", "--generations", "1", "--preset", "micro", "--shift-calibration", "2",
            "--target-distribution", "0.3,0.3,0.05,0.05,0.05,0.05,0.05,0.05,0.05,0.05"]
    keys = ("target_tv", "calibration_target_tv", "fid", "class_histogram", "cost_train_images", "cost_sample_nfe")
    code, _, err = run_cli(*args, "--out", tmp_path / "uninterrupted")
    assert code == 0, err[-2000:]
    killed = tmp_path / "killed"
    # round 0's fine-tune, round 0's calibration draw, round 1's fine-tune (the same kill points fire in
    # the next round once the earlier round is saved), round 1's draw
    for point in ["train:0:1:5", "sample:0:3:0", "train:0:1:5", "sample:0:3:0"]:
        code, _, err = run_cli(*args, "--out", killed, env={"AUTOPHAGY_KILL_AT": point})
        assert code == -9, (point, err[-2000:])
    assert (killed / "gen_000" / "aux_model_1").is_dir() and not (killed / "gen_000" / "DONE").exists()
    code, _, err = run_cli(*args, "--out", killed)
    assert code == 0, err[-2000:]
    rows = [json.loads((folder / "metrics.jsonl").read_text()) for folder in (killed, tmp_path / "uninterrupted")]
    ours, reference = ({k: r[k] for k in keys} for r in rows)
    assert ours == reference
    assert len(rows[0]["calibration_target_tv"]) == 2
    samples = [(folder / "gen_000" / "samples.npz").read_bytes() for folder in (killed, tmp_path / "uninterrupted")]
    assert samples[0] == samples[1]

"""SIMS distribution shifting: the target is checked, the auxiliary mix follows the derivation, the
rows carry the distance to the target."""
import json

import numpy as np
import pytest
from PIL import Image

from autophagy.config import ConfigError, make_config, validate
from autophagy.metrics import total_variation
from loops.regimes import validate_run
from loops.samplers import shift_indices, shift_mix

UNIFORM = ",".join(["0.1"] * 10)
SKEWED = "0.3,0.3,0.05,0.05,0.05,0.05,0.05,0.05,0.05,0.05"


@pytest.mark.parametrize("text, expected", [("0.5,0.6", "sum to 1"), ("0.5,x", "not a comma-separated"),
                                            ("1.5,-0.5", "not a distribution")])
def test_a_target_that_is_not_a_distribution_is_refused(text, expected):
    with pytest.raises(ConfigError, match=expected):
        validate(make_config("micro", regime="sims", target_distribution=text))


def test_a_target_needs_a_sampler_that_shifts_and_labelled_data(tmp_path):
    with pytest.raises(ConfigError, match="--sampler sims"):
        validate_run(make_config("micro", regime="fully-synthetic", target_distribution=UNIFORM))
    from loops.run import load_data_for
    with pytest.raises(ConfigError, match="one per class"):
        load_data_for(make_config("micro", regime="sims", target_distribution="0.5,0.5"))
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(520):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    with pytest.raises(ConfigError, match="no class labels"):
        load_data_for(make_config("micro", regime="sims", data=str(folder), target_distribution="1"))


def test_total_variation_on_a_known_histogram():
    assert total_variation([5, 3, 2], [0.5, 0.3, 0.2]) == 0.0
    assert np.isclose(total_variation([10, 0], [0.5, 0.5]), 0.5)      # ½(|1 − .5| + |0 − .5|)
    assert np.isclose(total_variation([1, 1, 2], [1.0, 0, 0]), 0.75)   # ½(.75 + .25 + .5)


def test_the_auxiliary_mix_steers_the_guided_mix_to_the_target():
    """Guided mix ∝ π_r^(1+ω) · π_s^(−ω) with π_s = shift_mix(π_r, q, ω) must be q itself."""
    pi_r = np.array([0.2, 0.1, 0.3, 0.4])
    q = np.array([0.4, 0.3, 0.2, 0.1])
    for omega in (0.5, 1.0, 2.0):
        pi_s = shift_mix(pi_r, q, omega)
        guided = pi_r ** (1 + omega) * pi_s ** (-omega)
        assert np.allclose(guided / guided.sum(), q)
    classes = np.repeat(np.arange(4), [200, 100, 300, 400])
    chosen = shift_indices(classes, q, 2.0, np.random.default_rng(0))
    mix = np.bincount(classes[chosen], minlength=4) / len(chosen)
    assert np.abs(mix - shift_mix(pi_r, q, 2.0)).max() < 0.01 and len(chosen) == pytest.approx(1000, abs=4)


def test_a_shifted_sims_run_records_its_distance_to_the_target(micro, tmp_path):
    from loops.run import run_loop
    rd = run_loop(micro(regime="sims", generations=1, target_distribution=SKEWED), tmp_path / "shift",
                  log=lambda *_: None)
    row = json.loads(rd.metrics_path.read_text().splitlines()[0])
    q = [float(v) for v in SKEWED.split(",")]
    assert row["target_tv"] == pytest.approx(total_variation(row["class_histogram"], q))
    assert row["plain_target_tv"] == pytest.approx(total_variation(row["plain_class_histogram"], q))
    assert row["uses"]["target_distribution"] == SKEWED
    assert row["target_fid"] > 0 and row["plain_target_fid"] > 0   # against the reference resampled to q
    assert 0 <= row["rejection_n"] <= row["n_reference"]      # the health draws rejection-sampled to q
    if row["rejection_n"] > 1:
        assert row["rejection_target_tv"] <= row["plain_target_tv"]


def test_the_reference_resampled_to_a_target_is_its_classes_reweighted():
    from autophagy.metrics import fid_to, gaussian_stats, reweighted_stats
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (300, 4)), rng.normal(5, 2, (100, 4))])
    labels = np.repeat([0, 1], [300, 100])
    mu, sigma = reweighted_stats(features, labels, (1.0, 0.0))          # only class 0
    assert np.allclose(mu, features[:300].mean(0)) and np.allclose(sigma, np.cov(features[:300], rowvar=False))
    mu, _ = reweighted_stats(features, labels, (0.5, 0.5))              # classes weighed equally, not 3:1
    assert np.allclose(mu, (features[:300].mean(0) + features[300:].mean(0)) / 2)
    # samples drawn 1:1 from both classes sit closer to the 1:1 reference than to the 3:1 one
    fake = np.concatenate([rng.normal(0, 1, (200, 4)), rng.normal(5, 2, (200, 4))])
    assert fid_to(reweighted_stats(features, labels, (0.5, 0.5)), fake) < fid_to(gaussian_stats(features), fake)


def test_rejection_sampling_keeps_the_largest_subset_with_the_target_mix():
    from loops.rows import rejection_subset
    classes = np.repeat(np.arange(10), 100)                       # 100 of each class
    q = [float(v) for v in SKEWED.split(",")]
    kept = rejection_subset(classes, q, np.random.default_rng(0))
    counts = np.bincount(classes[kept], minlength=10)
    assert counts.tolist() == [100, 100] + [17] * 8                # n = 100 / 0.3 = 333: 0.3n = 100, 0.05n = 16.7
    assert total_variation(counts, q) < 0.01 and len(set(kept)) == len(kept)
    assert rejection_subset(classes, [0.1] * 10, np.random.default_rng(0)).size == 1000   # already uniform: all


def test_the_calibration_exaggerates_the_auxiliary_mix_away_from_the_target():
    pi_r, q = np.full(10, 0.1), np.array([float(v) for v in SKEWED.split(",")])
    derived = shift_mix(pi_r, q, 2.0)
    assert np.allclose(shift_mix(pi_r, q, 2.0, exaggeration=1.0), derived)
    stronger = shift_mix(pi_r, q, 2.0, exaggeration=3.0)
    assert stronger[0] < derived[0] < pi_r[0] and stronger[5] > derived[5] > pi_r[5]   # fewer of what q wants more of
    with pytest.raises(ConfigError, match="--shift-exaggeration: 0.0"):
        validate(make_config("micro", regime="sims", shift_exaggeration=0.0))


def test_a_calibration_round_moves_the_guided_mix_to_the_target_under_the_derivation():
    """A guided mix g that over-fills a class raises that class in π_s; where the guided mix follows the
    derivation (∝ π_r^(1+ω) · π_s^(−ω)), one round with κ = 1 lands on q exactly."""
    from loops.samplers import recalibrate
    pi_r, q, omega = np.array([0.2, 0.1, 0.3, 0.4]), np.array([0.4, 0.3, 0.2, 0.1]), 2.0

    def guided(pi_s):
        g = pi_r ** (1 + omega) * pi_s ** (-omega)
        return g / g.sum()
    half_adopted = 0.5 * shift_mix(pi_r, q, omega) + 0.5 * pi_r        # a fine-tune that adopts π_s in part
    g = guided(half_adopted)
    assert not np.allclose(g, q)
    factor = recalibrate(g, q, omega)
    assert factor[0] < 1 < factor[3]                                   # class 0 under-filled, class 3 over-filled
    corrected = half_adopted * factor / (half_adopted * factor).sum()
    assert np.allclose(guided(corrected), q)
    assert np.allclose(shift_mix(pi_r, q, omega, correction=factor),   # the correction multiplies shift_mix's mix
                       shift_mix(pi_r, q, omega) * factor / (shift_mix(pi_r, q, omega) * factor).sum())
    assert np.allclose(recalibrate(q, q, omega, step=4.0), 1.0)         # on target: nothing changes
    assert np.allclose(recalibrate(g, q, omega, step=0.5), np.sqrt(factor))  # the step scales the exponent


def test_a_calibrated_shift_fine_tunes_again_and_records_each_rounds_distance(micro, tmp_path):
    from loops.run import run_loop
    rd = run_loop(micro(regime="sims", generations=1, target_distribution=SKEWED, shift_calibration=2),
                  tmp_path / "calibrated", log=lambda *_: None)
    row = json.loads(rd.metrics_path.read_text().splitlines()[0])
    plain = run_loop(micro(regime="sims", generations=1, target_distribution=SKEWED), tmp_path / "once",
                     log=lambda *_: None)
    once = json.loads(plain.metrics_path.read_text().splitlines()[0])
    assert len(row["calibration_target_tv"]) == 2 and all(0 <= d <= 1 for d in row["calibration_target_tv"])
    q = [float(v) for v in SKEWED.split(",")]
    assert [total_variation(h, q) for h in row["calibration_class_histograms"]] == pytest.approx(
        row["calibration_target_tv"])
    assert all((rd.gen(0) / name).is_dir() for name in ("aux_model", "aux_model_1", "aux_model_2"))
    cfg = micro()
    assert row["cost_train_images"] - once["cost_train_images"] == 2 * cfg.aux_train_steps * cfg.batch_size
    assert row["cost_sample_nfe"] - once["cost_sample_nfe"] == 2 * cfg.n_aux * cfg.sampling_steps * 2  # 2 networks
    assert "calibration_target_tv" not in once
    with pytest.raises(ConfigError, match="--shift-calibration: 2"):
        validate(make_config("micro", regime="sims", shift_calibration=2))

"""Self-correcting loops (Gillman et al. 2024): the k-means correction, the γ blend, the regime's D_t."""
import dataclasses
import json

import numpy as np
import pytest

from autophagy.config import ConfigError, make_config
from loops.corrections import CORRECTIONS, blend, register_correction
from loops.regimes import REGIMES, RealDraws, TrainingSet, check_training_set, validate_run


def _two_class_pool(n=60, seed=0):
    """Class 0 dark images around two shapes, class 1 bright: (images (n,1,4,4) uint8, labels)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    base = np.where(labels[:, None, None, None] == 0, 40, 200) + rng.integers(-20, 20, (n, 1, 4, 4))
    return np.clip(base, 0, 255).astype(np.uint8), labels


def test_kmeans_correction_maps_a_centroid_to_itself_and_moves_a_sample_by_gamma():
    images, labels = _two_class_pool()
    cfg = make_config("micro", regime="self-correcting", correction_clusters=3)
    project = CORRECTIONS["kmeans"].fit(images, labels, cfg)
    x = images[:10]
    centroids = project(x, labels[:10])
    assert not np.array_equal(centroids, x)
    assert np.array_equal(project(centroids, labels[:10]), centroids)   # a centroid is its own correction
    half = blend(x, centroids, 0.5)
    expected = x.astype(float) + 0.5 * (centroids.astype(float) - x)     # γ of the way to the centroid
    assert np.abs(half - expected).max() <= 0.5
    assert np.array_equal(blend(x, centroids, 0.0), x) and np.array_equal(blend(x, centroids, 1.0), centroids)
    # the correction of a sample is a centroid of its own class: bright stays bright whatever it looked like
    assert (project(np.zeros_like(x[:2]), np.array([1, 1])) > 150).all()


def test_self_correcting_regime_trains_on_the_corrected_previous_samples():
    images, labels = _two_class_pool(200)
    cfg = make_config("micro", regime="self-correcting", generations=3, n_real=60, correction_strength=0.5,
                      correction_clusters=4)
    samples = np.random.default_rng(5).integers(0, 256, (cfg.n_synthetic, 1, 4, 4)).astype(np.uint8)
    predicted = np.arange(cfg.n_synthetic) % 2
    fits = []

    def counted(real_images, real_labels, c):   # a plug-in correction, registered as a plug-in would
        fits.append(len(real_images))
        return CORRECTIONS["kmeans"].fit(real_images, real_labels, c)
    register_correction("kmeans-counted", counted, uses=("correction_clusters",))
    try:
        d = RealDraws(np.arange(200), dataclasses.replace(cfg, correction="kmeans-counted"),
                      samples=lambda g: (samples, None), verifier=lambda x: (np.ones(len(x)), predicted),
                      num_classes=2, images=images, labels=labels)
        ts1 = REGIMES["self-correcting"].training_set(1, d)
        ts2 = REGIMES["self-correcting"].training_set(2, d)
    finally:
        del CORRECTIONS["kmeans-counted"]
    assert fits == [60]                                       # fitted on R_0 once per run, not per generation
    assert np.array_equal(ts1.real_indices, d.draw(0)) and ts1.synthetic_generations == (0,)
    corrected = ts1.replaced[0]
    r0_images, r0_labels = images[d.draw(0)], labels[d.draw(0)]
    targets = CORRECTIONS["kmeans"].fit(r0_images, r0_labels, cfg)(samples, predicted)
    assert np.array_equal(corrected, blend(samples, targets, 0.5))
    assert ts1.info["correction_moved_l2"] > 0 and ts2.synthetic_generations == (1,)
    check_training_set("self-correcting", 1, ts1, d.pool_members, lambda g: len(samples), lambda g: samples.shape[1:])


def test_replacement_images_of_another_shape_or_dtype_are_refused():
    pool = np.arange(10)
    ok = TrainingSet(np.array([1, 2]), (0,), {0: np.array([0, 3])}, replaced={0: np.zeros((2, 1, 4, 4), np.uint8)})
    check_training_set("ok", 1, ok, pool, lambda g: 5, lambda g: (1, 4, 4))
    for replaced, problem in [({0: np.zeros((3, 1, 4, 4), np.uint8)}, "shape"),
                              ({0: np.zeros((2, 1, 4, 4), np.float32)}, "uint8"),
                              ({1: np.zeros((2, 1, 4, 4), np.uint8)}, "does not train on")]:
        bad = TrainingSet(np.array([1, 2]), (0,), {0: np.array([0, 3])}, replaced=replaced)
        with pytest.raises(ConfigError, match=problem):
            check_training_set("bad", 1, bad, pool, lambda g: 5, lambda g: (1, 4, 4))


def test_bad_correction_settings_are_refused():
    with pytest.raises(ConfigError, match="--correction-strength: 1.5"):
        validate_run(make_config("micro", regime="self-correcting", correction_strength=1.5))
    with pytest.raises(ConfigError, match="--correction: 'nearest'.*kmeans"):
        validate_run(make_config("micro", regime="self-correcting", correction="nearest"))
    with pytest.raises(ConfigError, match="already registered"):
        register_correction("kmeans", lambda *a: None)
    images = np.zeros((4, 1, 2, 2), np.uint8)
    with pytest.raises(ConfigError, match="keep the shape"):
        blend(images, images[:, :, :1], 0.5)


def test_self_correcting_run_end_to_end(micro, tmp_path):
    from loops.run import run_loop
    cfg = micro(regime="self-correcting", generations=2, correction_strength=1.0)
    run_loop(cfg, tmp_path / "sc")
    rows = [json.loads(line) for line in (tmp_path / "sc" / "metrics.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == [0, 1]
    assert rows[1]["correction_moved_l2"] > 0 and "correction_moved_l2" not in rows[0]
    assert rows[1]["control"] == "synthetic-augmentation"

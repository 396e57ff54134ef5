"""D_t of every regime over several generations, with no training: counts, indices, disjointness."""
import numpy as np
import pytest

from autophagy.config import ConfigError, make_config
from loops.regimes import sampler_of, REGIMES, RealDraws, check_pool, validate_run


def draws(regime, **kw):
    cfg = make_config("micro", regime=regime, generations=5, n_real=100, **kw)
    return cfg, RealDraws(np.arange(1000, 2000), cfg)


def test_generation_zero_is_r0_for_every_regime():
    sets = []
    for name, regime in REGIMES.items():
        cfg, d = draws(name)
        ts = regime.training_set(0, d)
        assert ts.synthetic_generations == () and len(ts.real_indices) == 100
        sets.append(ts.real_indices)
    assert all(np.array_equal(sets[0], s) for s in sets)  # the same R_0 whatever the regime
    assert set(sets[0]) <= set(range(1000, 2000))


def test_fully_synthetic_uses_only_previous_samples():
    cfg, d = draws("fully-synthetic")
    for t in range(1, 5):
        ts = REGIMES["fully-synthetic"].training_set(t, d)
        assert len(ts.real_indices) == 0 and ts.synthetic_generations == (t - 1,)


@pytest.mark.parametrize("name", ["synthetic-augmentation", "sims"])
def test_augmentation_keeps_r0(name):
    cfg, d = draws(name)
    r0 = REGIMES[name].training_set(0, d).real_indices
    for t in range(1, 5):
        ts = REGIMES[name].training_set(t, d)
        assert np.array_equal(ts.real_indices, r0) and ts.synthetic_generations == (t - 1,)
    assert REGIMES["sims"].sampler == "sims" and REGIMES["synthetic-augmentation"].sampler is None
    assert sampler_of(make_config("micro", regime="synthetic-augmentation")) == "plain"


def test_fresh_data_draws_are_disjoint():
    cfg, d = draws("fresh-data", n_real_fresh=50)
    seen = set()
    for t in range(5):
        ts = REGIMES["fresh-data"].training_set(t, d)
        assert len(ts.real_indices) == (100 if t == 0 else 50)
        assert ts.synthetic_generations == (() if t == 0 else (t - 1,))
        assert not seen & set(ts.real_indices)
        seen |= set(ts.real_indices)
    assert len(seen) == 300


def test_accumulate_grows():
    cfg, d = draws("accumulate")
    r0 = REGIMES["accumulate"].training_set(0, d).real_indices
    for t in range(1, 5):
        ts = REGIMES["accumulate"].training_set(t, d)
        assert np.array_equal(ts.real_indices, r0) and ts.synthetic_generations == tuple(range(t))


def test_fresh_data_pool_too_small_is_refused_with_counts():
    cfg = make_config("micro", regime="fresh-data", generations=10, n_real=1000, n_reference=1000, n_real_fresh=500)
    with pytest.raises(ConfigError, match=r"needs 6600 real images .* 100 validation\) .* holds 5000"):
        check_pool(cfg, 5000)
    check_pool(make_config("micro", regime="fresh-data", generations=10, n_real=1000, n_reference=1000,
                           n_real_fresh=500, allow_reuse=True), 5000)
    check_pool(make_config("micro", regime="synthetic-augmentation", generations=10, n_real=1000,
                           n_reference=1000), 5000)  # only fresh-data needs fresh images


def test_allow_reuse_draws_with_replacement_past_the_pool():
    cfg = make_config("micro", regime="fresh-data", generations=5, n_real=80, n_real_fresh=40, allow_reuse=True)
    d = RealDraws(np.arange(100), cfg)
    assert len(d.draw(1)) == 40  # 80 + 40 > 100: past the pool, with replacement
    late = d.draw(4)
    assert len(late) == 40 and set(late) <= set(range(100))


def test_default_pool_feeds_fresh_data_over_ten_generations():
    """MNIST-5k: 1000 R_0 + 9 x 250 fresh + 1000 reference + 500 validation = 4750 <= 5000."""
    check_pool(make_config("cpu", regime="fresh-data", generations=10), 5000)


class _Samples:
    def __init__(self, n):
        self.n = n

    def __call__(self, g):
        images = np.full((self.n, 1, 2, 2), g, dtype=np.uint8)
        return images, np.arange(self.n) % 10


def test_accumulate_subsample_has_the_budget_and_only_allowed_generations():
    cfg = make_config("micro", regime="accumulate-subsample", generations=6)
    d = RealDraws(np.arange(1000), cfg)
    r0 = set(d.draw(0))
    for t in range(1, 6):
        ts = REGIMES["accumulate-subsample"].training_set(t, d)
        n_synth = sum(len(idx) for _, idx in ts.synthetic_parts())
        assert len(ts.real_indices) + n_synth == cfg.n_real + cfg.n_synthetic
        assert set(ts.real_indices) <= r0 and ts.synthetic_generations == tuple(range(t))
        for g, idx in ts.synthetic_parts():
            assert 0 <= g < t and (idx < cfg.n_synthetic).all() and len(set(idx)) == len(idx)
        again = REGIMES["accumulate-subsample"].training_set(t, d)  # seeded: the same subsample
        assert np.array_equal(again.real_indices, ts.real_indices)
    assert len(ts.real_indices) < cfg.n_real  # later generations mix real and synthetic uniformly


def test_curation_keeps_exactly_the_top_q_by_the_verifier():
    cfg = make_config("micro", regime="curated", generations=3, curation_keep=0.3)
    confidence = np.random.default_rng(0).random(cfg.n_synthetic)
    d = RealDraws(np.arange(1000), cfg, samples=_Samples(cfg.n_synthetic),
                  verifier=lambda images: (confidence, np.arange(len(images)) % 10), num_classes=10)
    ts = REGIMES["curated"].training_set(2, d)
    (g, kept), = ts.synthetic_parts()
    dropped = np.setdiff1d(np.arange(cfg.n_synthetic), kept)
    assert g == 1 and len(kept) == 30 == len(set(kept))
    assert confidence[kept].min() > confidence[dropped].max()  # every kept image beats every dropped one
    assert ts.info["curation_kept_fraction"] == 0.3
    assert sum(ts.info["curation_kept_histogram"]) == 30
    assert ts.info["curation_kept_histogram"][3] == int(np.sum(kept % 10 == 3))
    assert np.array_equal(ts.real_indices, d.draw(0))


def test_accumulate_growing_trains_in_proportion_to_its_data():
    cfg, d = draws("accumulate-growing", n_synthetic=250)
    for t in range(1, 5):
        ts = REGIMES["accumulate-growing"].training_set(t, d)
        size = len(ts.real_indices) + sum(cfg.n_synthetic for _ in ts.synthetic_generations)
        assert ts.synthetic_generations == tuple(range(t))
        assert ts.train_steps == round(cfg.train_steps * size / cfg.n_real)   # |D_t| / |D_0|, exactly
    assert REGIMES["accumulate-growing"].training_set(0, d).train_steps is None  # generation 0: the preset's


def test_the_growing_budget_control_trains_as_long_as_accumulate_growing_on_the_last_sample_only():
    cfg, d = draws("synthetic-augmentation-growing", n_synthetic=250)
    for t in range(1, 5):
        control = REGIMES["synthetic-augmentation-growing"].training_set(t, d)
        accumulating = REGIMES["accumulate-growing"].training_set(t, d)
        assert control.synthetic_generations == (t - 1,) and np.array_equal(control.real_indices, d.draw(0))
        assert control.train_steps == accumulating.train_steps == round(cfg.train_steps * (1 + t * 250 / cfg.n_real))


def test_balanced_curation_keeps_the_top_q_of_every_class():
    cfg = make_config("micro", regime="curated-balanced", generations=3, curation_keep=0.3)
    rng = np.random.default_rng(1)
    confidence = rng.random(cfg.n_synthetic)
    predicted = rng.choice(10, cfg.n_synthetic, p=[0.4] + [0.6 / 9] * 9)   # a verifier biased to class 0
    d = RealDraws(np.arange(1000), cfg, samples=_Samples(cfg.n_synthetic),
                  verifier=lambda images: (confidence, predicted), num_classes=10)
    (g, kept), = REGIMES["curated-balanced"].training_set(2, d).synthetic_parts()
    for c in range(10):
        members = np.flatnonzero(predicted == c)
        mine = np.intersect1d(kept, members)
        assert len(mine) == max(1, round(0.3 * len(members)))
        if len(mine) < len(members):   # every kept image of the class beats every dropped one of it
            assert confidence[mine].min() > confidence[np.setdiff1d(members, mine)].max()


def test_class_weights_give_r0_exactly_the_asked_class_counts():
    labels = np.arange(3000) % 10
    cfg = make_config("micro", regime="fresh-data", generations=3, n_real=200, n_real_fresh=50,
                      class_weights="3,1,1,1,1,1,1,1,1,1")
    d = RealDraws(np.arange(1000, 3000), cfg, num_classes=10, images=np.zeros((3000, 1, 2, 2), np.uint8), labels=labels)
    counts = np.bincount(labels[d.draw(0)], minlength=10)
    assert counts.tolist() == [50] + [17] * 6 + [16] * 3 and counts.sum() == 200   # 200·3/12, 200/12 rounded to sum
    assert not set(d.draw(1)) & set(d.draw(0)) and len(set(d.draw(0))) == 200   # fresh draws still disjoint
    plain = RealDraws(np.arange(1000, 3000), make_config("micro", regime="fresh-data", n_real=200), num_classes=10,
                      labels=labels)
    assert abs(np.bincount(labels[plain.draw(0)], minlength=10)[0] - 20) < 12   # unweighted: about uniform
    with pytest.raises(ConfigError, match="gives 2 weights; .* has 10 classes"):
        RealDraws(np.arange(100), make_config("micro", class_weights="1,2"), num_classes=10, labels=labels)
    with pytest.raises(ConfigError, match="--class-weights: '1,-1'"):
        validate_run(make_config("micro", class_weights="1,-1"))

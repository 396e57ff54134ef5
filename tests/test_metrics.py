"""Known answers, and agreement with an independent brute-force numpy/scipy implementation."""
import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist

from autophagy.metrics import METRIC_KEYS, class_statistics, compute_metrics


def reference_metrics(real, fake, k):
    """Slow, independent: brute-force distances, scipy sqrtm, definitions of Kynkäänniemi/Naeem."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    fid = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    d_rr, d_ff, d_fr = cdist(real, real), cdist(fake, fake), cdist(fake, real)
    r_real = np.sort(d_rr, axis=1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(d_ff, axis=1)[:, k]
    precision = np.mean([(d_fr[j] < r_real).any() for j in range(len(fake))])
    recall = np.mean([(d_fr[:, i] < r_fake).any() for i in range(len(real))])
    density = sum((d_fr[j] < r_real).sum() for j in range(len(fake))) / (k * len(fake))
    coverage = np.mean([d_fr[:, i].min() < r_real[i] for i in range(len(real))])
    return dict(fid=fid, precision=precision, recall=recall, density=density, coverage=coverage)


def test_identical_sets_are_perfect():
    x = np.random.default_rng(0).normal(size=(300, 16))
    m = compute_metrics(x, x.copy(), k=3)
    assert set(m) == set(METRIC_KEYS)
    assert abs(m["fid"]) < 1e-6
    assert m["precision"] == m["recall"] == m["coverage"] == 1.0


def test_separated_clusters_score_zero():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 100.0
    m = compute_metrics(real, fake, k=3)
    assert m["precision"] == m["recall"] == m["density"] == m["coverage"] == 0.0
    assert m["fid"] > 8 * 100.0 ** 2 * 0.9


def test_subset_drops_recall_only():
    """Fakes = the real points of half of the modes: all realistic, half of the real set missed."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(10, 8)) * 50
    real = np.concatenate([c + rng.normal(size=(60, 8)) for c in centres])
    fake = real[:300]  # modes 0-4 only
    m = compute_metrics(real, fake, k=3)
    assert m["precision"] == 1.0
    assert m["recall"] == m["coverage"] == 0.5


@pytest.mark.parametrize("k", [1, 3, 5])
def test_agrees_with_bruteforce_reference(k):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(400, 12))
    fake = rng.normal(size=(350, 12)) * 1.3 + 0.4
    ours, ref = compute_metrics(real, fake, k=k), reference_metrics(real, fake, k)
    for key in set(METRIC_KEYS) - {"kid"}:
        assert ours[key] == pytest.approx(ref[key], rel=1e-6), key
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1  # the case is not degenerate


@pytest.mark.parametrize("duplicates", [False, True])
def test_prdc_matches_the_authors_package(duplicates):
    """The `prdc` package (Naeem et al.'s code) on equal-size sets, also where the generated set holds exact
    duplicates (a collapsed loop): ties count as outside a ball there, and here."""
    from prdc import compute_prdc
    rng = np.random.default_rng(11)
    real = rng.normal(size=(300, 8))
    fake = rng.normal(size=(300, 8)) * 1.2
    if duplicates:
        fake[100:] = fake[rng.integers(0, 100, 200)]  # 200 exact copies of 100 distinct points
        fake[:5] = real[:5]                            # and a few exact copies of real points
    ours = compute_metrics(real, fake, k=3)
    theirs = compute_prdc(real_features=real, fake_features=fake, nearest_k=3)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-9), key


def test_ties_count_as_outside():
    """Two duplicated real points: the k=1 radius of each is 0, so a fake on top of them is not inside
    (`<`, as prdc); with `<=` precision would be 1."""
    real = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    fake = np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0], [300.0, 0.0]])
    assert compute_metrics(real, fake, k=1)["precision"] == 0.0


def test_prdc_uses_an_equal_size_subset_fid_and_kid_use_all():
    from autophagy.metrics import equal_size_subset, prdc
    rng = np.random.default_rng(12)
    real, fake = rng.normal(size=(200, 6)), rng.normal(size=(500, 6)) + 0.2
    subset = equal_size_subset(500, 200, seed=3)
    assert len(subset) == 200 and len(set(subset)) == 200
    m = compute_metrics(real, fake, k=3, seed=3)
    assert m["recall"] == prdc(real, fake[subset], 3)["recall"]
    assert m["recall"] != prdc(real, fake, 3)["recall"]  # all 500 would give another (biased) recall
    from cleanfid.fid import fid_from_feats
    assert m["fid"] == pytest.approx(fid_from_feats(real, fake), rel=1e-9)


def test_kid_known_answers():
    """KID (clean-fid's kernel distance) is unbiased: about 0 for two samples of one distribution,
    clearly positive for shifted ones; seeded, so repeatable."""
    from autophagy.metrics import kid
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same = kid(a, b)
    assert abs(same) < 0.02 and kid(a, b) == same
    assert kid(a, b + 1.0) > 0.5 > abs(same) * 10


def test_memorization_known_answers():
    """Exact copies of training images score 1; held-out real images (MNIST) score about 0."""
    from autophagy.data import load_real_data
    from autophagy.metrics import memorization
    real = load_real_data("mnist", 16, 1000, 500)
    train = real.images[real.pool[:2000]]
    assert memorization(train[:300], train) == 1.0
    assert memorization(train[:300], np.concatenate([train, train[:300]])) == 1.0  # duplicated training images
    assert memorization(real.images[real.validation], train) < 0.02
    half = np.concatenate([train[:100], real.images[real.validation[:100]]])
    assert 0.48 <= memorization(half, train) <= 0.52


def test_chunking_does_not_change_results(monkeypatch):
    import autophagy.metrics as metrics
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(300, 6)), rng.normal(size=(250, 6)) + 0.3
    whole = compute_metrics(real, fake)
    monkeypatch.setattr(metrics, "CHUNK_ROWS", 37)
    assert compute_metrics(real, fake) == pytest.approx(whole, rel=1e-12)


def test_fid_matches_clean_fid_on_features():
    from cleanfid.fid import fid_from_feats
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(300, 10)), rng.normal(size=(300, 10)) * 0.8
    assert compute_metrics(real, fake)["fid"] == pytest.approx(fid_from_feats(real, fake), rel=1e-9)


def test_class_statistics():
    s = class_statistics(np.array([0, 0, 1, 1, 2, 2]), 10)
    assert s["classes_covered"] == 3
    assert s["class_histogram"][:3] == [2, 2, 2] and sum(s["class_histogram"]) == 6
    assert s["class_entropy"] == pytest.approx(np.log(3) / np.log(10))
    assert class_statistics(np.arange(10), 10)["class_entropy"] == pytest.approx(1.0)

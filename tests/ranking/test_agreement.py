"""Spearman / Kendall with the budgetax orientation, NaN handling and the bootstrap CI."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from budgetax import ranking
from tests.reference import ranking as ref


def _data(n=25, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.5, 0.95, n)
    scores = -truth + 0.1 * rng.standard_normal(n)  # lower score ~ higher truth
    if ties:
        scores = np.round(scores, 1)
        truth = np.round(truth, 1)
    return scores, truth


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, False)])
def test_against_reference(seed, ties):
    scores, truth = _data(seed=seed, ties=ties)
    scores[3] = np.nan
    scores[7] = np.inf
    scores[8] = -np.inf  # also ranked last, not first
    truth[5] = np.nan
    assert ranking.spearman(scores, truth) == pytest.approx(ref.spearman(scores, truth), abs=1e-12)
    assert ranking.kendall(scores, truth) == pytest.approx(ref.kendall(scores, truth), abs=1e-12)


def test_orientation_perfect_and_reversed():
    truth = np.linspace(0.1, 0.9, 10)
    assert ranking.spearman(-truth, truth) == pytest.approx(1.0)
    assert ranking.kendall(1 - truth, truth) == pytest.approx(1.0)
    assert ranking.spearman(truth, truth) == pytest.approx(-1.0)
    assert ranking.kendall(truth, truth) == pytest.approx(-1.0)
    # jax arrays are accepted
    assert ranking.spearman(jnp.asarray(-truth), jnp.asarray(truth)) == pytest.approx(1.0)


def test_nan_scores_ranked_last():
    truth = np.array([0.9, 0.8, 0.7, 0.1])
    # the worst model diverged (NaN score): still a perfect ranking
    assert ranking.spearman([0.1, 0.2, 0.3, np.nan], truth) == pytest.approx(1.0)
    assert ranking.kendall([0.1, 0.2, 0.3, np.inf], truth) == pytest.approx(1.0)
    # the best model has a NaN score: ranked last, the correlation drops
    assert ranking.spearman([np.nan, 0.2, 0.3, 0.4], truth) < 0.0
    r = ranking.goodness_ranks([0.3, np.nan, -np.inf, 0.1], higher_is_better=False)
    assert r.tolist() == [3.0, 1.5, 1.5, 4.0]


def test_constant_input_gives_nan_and_says_why():
    with pytest.warns(UserWarning, match=r"spearman is undefined \(NaN\): scores ranks every"):
        assert np.isnan(ranking.spearman([1.0, 1.0, 1.0], [0.1, 0.2, 0.3]))
    with pytest.warns(UserWarning, match=r"kendall is undefined \(NaN\): truth ranks every"):
        assert np.isnan(ranking.kendall([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]))


def test_bootstrap_ci():
    scores, truth = _data(n=40, seed=3)
    point = ranking.spearman(scores, truth)
    low, high = ranking.bootstrap_ci(scores, truth, n_boot=300, seed=0)
    assert -1.0 <= low < point < high <= 1.0
    assert (low, high) == ranking.bootstrap_ci(scores, truth, n_boot=300, seed=0)  # fixed seed
    assert (low, high) != ranking.bootstrap_ci(scores, truth, n_boot=300, seed=1)
    # a wider level gives a wider interval; kendall is smaller than spearman here
    low99, high99 = ranking.bootstrap_ci(scores, truth, n_boot=300, level=0.99, seed=0)
    assert low99 <= low and high99 >= high
    klow, khigh = ranking.bootstrap_ci(scores, truth, metric="kendall", n_boot=300)
    assert klow < ranking.kendall(scores, truth) < khigh and khigh < high
    # the interval is the percentile interval of resampled statistics (checked by hand)
    rng = np.random.default_rng(5)
    stats = []
    for _ in range(200):
        idx = rng.integers(0, 40, size=40)
        stats.append(ref.spearman(scores[idx], truth[idx]))
    want = np.quantile(stats, [0.05, 0.95])
    got = ranking.bootstrap_ci(scores, truth, n_boot=200, level=0.9, seed=5)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        ranking.spearman([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="at least 2"):
        ranking.kendall([0.1], [0.2])
    with pytest.raises(ValueError, match="metric.*'pearson'"):
        ranking.bootstrap_ci([0.1, 0.2], [0.1, 0.2], metric="pearson")
    with pytest.raises(ValueError, match="level.*1.5"):
        ranking.bootstrap_ci([0.1, 0.2], [0.1, 0.2], level=1.5)
    with pytest.raises(ValueError, match="n_boot.*0"):
        ranking.bootstrap_ci([0.1, 0.2], [0.1, 0.2], n_boot=0)
    with pytest.raises(TypeError, match="seed"):
        ranking.bootstrap_ci([0.1, 0.2], [0.1, 0.2], seed=1.5)

"""Initialization schemes: k-means++ seeding, Lloyd iterations and the "kmeans" start of EM."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from bayesmix.infer.em import fit_em
from bayesmix.infer.init import (
    INITS,
    init_kmeans,
    init_kmeanspp,
    kmeans_objective,
    kmeanspp_locs,
    lloyd,
    nearest,
)


def _separated_blobs(n_per=60, k=6, sd=1.2, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """k round clusters on a circle of radius 10: (k n_per, 2) rows and labels."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(k) / k
    means = 10 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.repeat(np.arange(k), n_per)
    return means[labels] + sd * rng.normal(size=(k * n_per, 2)), labels


def _aris(locs: jnp.ndarray, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ARI of the nearest-loc partition of x for each set of locs (R, K, D) -> (R,)."""
    return np.array([adjusted_rand_score(labels, nearest(jnp.asarray(x), m)) for m in locs])


def test_kmeans_init_recovers_separated_clusters_where_seeding_alone_may_not():
    x, labels = _separated_blobs()
    keys = jax.random.split(jax.random.key(0), 20)
    starts = jax.vmap(init_kmeans, in_axes=(0, None, None))(keys, jnp.asarray(x), 6)
    assert np.all(_aris(starts.locs, x, labels) == 1.0)
    for trials in (1, 4):  # plain and greedy k-means++ seeds, without Lloyd iterations
        seeds = jax.vmap(lambda key, t=trials: kmeanspp_locs(key, jnp.asarray(x), 6, t))(keys)
        assert np.any(_aris(seeds, x, labels) < 1.0)


@pytest.mark.parametrize("trials", [1, 4])
def test_lloyd_iterations_never_increase_the_kmeans_objective(trials):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(500, 3)))
    locs = kmeanspp_locs(jax.random.key(2), x, 7, trials)
    objectives = [float(kmeans_objective(x, lloyd(x, locs, it))) for it in range(8)]
    assert np.all(np.diff(objectives) <= 1e-9 * objectives[0]), objectives
    assert objectives[-1] < objectives[0]


def test_a_loc_without_rows_stays_put():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(100, 2)))
    locs = jnp.asarray([[0.0, 0.0], [50.0, 50.0], [-50.0, 50.0]])  # every row is nearest the first
    out = lloyd(x, locs, 3)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[1:], locs[1:])
    np.testing.assert_allclose(out[0], x.mean(axis=0))


def test_greedy_seeding_with_one_trial_is_plain_kmeanspp():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(300, 2)))
    init = init_kmeanspp(jax.random.key(5), x, 4)
    np.testing.assert_array_equal(init.locs, kmeanspp_locs(jax.random.key(5), x, 4, trials=1))
    np.testing.assert_allclose(init.weights, 0.25)
    with pytest.raises(ValueError, match="trials"):
        kmeanspp_locs(jax.random.key(5), x, 4, trials=0)


def test_kmeans_init_weights_are_the_cluster_shares_and_spreads_positive():
    x, _ = _separated_blobs(n_per=30, k=3)
    init = INITS["kmeans"](jax.random.key(6), jnp.asarray(x), 3)
    assert init.locs.shape == (3, 2) and init.spread.shape == (2,)
    np.testing.assert_allclose(init.weights, 1 / 3, atol=1e-12)
    assert np.all(init.spread > 0)


def test_em_starts_from_kmeans_by_default_and_finds_the_clusters():
    x, labels = _separated_blobs()
    fit = fit_em(x, 6, covariance="diag", priors="auto", n_init=1)
    assert adjusted_rand_score(labels, np.asarray(nearest(jnp.asarray(x), fit.params.locs))) == 1.0


@pytest.mark.parametrize("scheme", ["seed", "kmeans++", "kmeans"])
def test_every_scheme_reads_only_the_valid_rows_of_a_padded_array(scheme):
    """A padded array (rows past n_valid, here far outliers) gives what its valid rows give:
    locs among them, spreads and weights from them alone (deterministic parts exactly)."""
    x, _ = _separated_blobs(n_per=30, k=3)
    padded = jnp.asarray(np.concatenate([x, np.full((38, 2), 1e6)]))
    keys = jax.random.split(jax.random.key(7), 30)
    inits = jax.vmap(INITS[scheme], in_axes=(0, None, None, None))(keys, padded, 3, len(x))
    np.testing.assert_array_less(np.abs(inits.locs), 100)  # never a padding row
    np.testing.assert_allclose(inits.weights.sum(axis=1), 1.0)
    assert np.all(inits.spread < 10)  # the padding rows' 1e6 would show in every spread
    if scheme == "seed":
        np.testing.assert_allclose(inits.spread[0], np.sqrt(x.var(axis=0, ddof=1) / 2))
    locs = jnp.asarray(x[[0, 40, 80]])
    np.testing.assert_allclose(lloyd(padded, locs, 3, len(x)), lloyd(jnp.asarray(x), locs, 3))
    from bayesmix.infer.init import _init_from_locs

    for count in (True, False):
        got = _init_from_locs(padded, locs, count_weights=count, n_valid=len(x))
        want = _init_from_locs(jnp.asarray(x), locs, count_weights=count)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)

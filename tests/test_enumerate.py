"""The enumerated log joint and responsibilities against naive NumPy/SciPy computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp

from bayesmix.enumerate import (
    assign,
    assign_from_logits,
    log_joint,
    log_likelihood,
    log_responsibilities,
    row_number,
)
from bayesmix.model import Params, Priors


def naive_log_joint(w, locs, scale, x, priors=None):
    """Loop over points and components with SciPy densities."""
    priors = priors or Priors()
    lp = stats.dirichlet.logpdf(w, np.full(len(w), priors.weights_concentration))
    lp += stats.lognorm.logpdf(scale, priors.scale_scale, scale=np.exp(priors.scale_loc))
    lp += stats.norm.logpdf(locs, priors.locs_loc, priors.locs_scale).sum()
    d = x.shape[1]
    terms = np.array(
        [
            [
                np.log(w[k]) + stats.multivariate_normal.logpdf(xn, locs[k], scale**2 * np.eye(d))
                for k in range(len(w))
            ]
            for xn in x
        ]
    )
    return lp + logsumexp(terms, axis=1).sum(), terms - logsumexp(terms, axis=1, keepdims=True)


def random_problem(seed: int, n: int, d: int, k: int):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k))
    locs = rng.normal(0, 3, (k, d))
    scale = float(rng.lognormal(0, 0.5))
    x = rng.normal(0, 4, (n, d))
    return w, locs, scale, x


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("jit", [False, True])
def test_log_joint_and_responsibilities_match_scipy(d, jit):
    w, locs, scale, x = random_problem(d, n=7, d=d, k=3)
    params = Params(jnp.asarray(w), jnp.asarray(locs), jnp.asarray(scale))
    priors = Priors(0.7, 0.3, 1.5, -1.0, 4.0)
    lj = jax.jit(log_joint) if jit else log_joint
    lr = jax.jit(log_responsibilities) if jit else log_responsibilities
    expected_lj, expected_lr = naive_log_joint(w, locs, scale, x, priors)
    np.testing.assert_allclose(lj(params, jnp.asarray(x), priors), expected_lj, rtol=1e-10)
    np.testing.assert_allclose(lr(params, jnp.asarray(x)), expected_lr, rtol=1e-9, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 9),
    d=st.integers(1, 4),
    k=st.integers(1, 4),
)
def test_log_joint_random_shapes(seed, n, d, k):
    w, locs, scale, x = random_problem(seed, n, d, k)
    params = Params(jnp.asarray(w), jnp.asarray(locs), jnp.asarray(scale))
    expected, _ = naive_log_joint(w, locs, scale, x)
    np.testing.assert_allclose(log_joint(params, jnp.asarray(x), Priors()), expected, rtol=1e-9)


def test_seed_map_neg_log_joint_matches_pyro(pyro_ref):
    m = pyro_ref["map"]
    params = Params(jnp.asarray(m["weights"]), jnp.asarray(m["locs"])[:, None], m["scale"])
    x = jnp.asarray([[0.0], [1.0], [10.0], [11.0], [12.0]])
    # Pyro's final MAP loss (float32) is the negative log joint at these values.
    assert -float(log_joint(params, x, Priors())) == pytest.approx(17.4433, abs=1e-4)


def test_label_permutation_invariance():
    w, locs, scale, x = random_problem(3, n=6, d=2, k=4)
    perm = np.array([2, 0, 3, 1])
    a = Params(jnp.asarray(w), jnp.asarray(locs), jnp.asarray(scale))
    b = Params(jnp.asarray(w[perm]), jnp.asarray(locs[perm]), jnp.asarray(scale))
    xj = jnp.asarray(x)
    np.testing.assert_allclose(log_joint(a, xj, Priors()), log_joint(b, xj, Priors()), rtol=1e-12)
    np.testing.assert_allclose(
        log_responsibilities(a, xj)[:, perm], log_responsibilities(b, xj), rtol=1e-12
    )


def test_stable_for_far_points_tiny_scales_and_many_components():
    k = 300
    locs = jnp.linspace(-50, 50, k)[:, None]
    params = Params(jnp.full((k,), 1.0 / k), locs, jnp.asarray(1e-3))
    x = jnp.asarray([[1e6], [-3e5], [0.05], [50.0]])
    lr = log_responsibilities(params, x)
    assert jnp.all(jnp.isfinite(lr))
    np.testing.assert_allclose(jnp.exp(lr).sum(-1), 1.0, rtol=1e-12)
    # The far point belongs to the nearest component with probability one.
    assert int(jnp.argmax(lr[0])) == k - 1 and int(jnp.argmax(lr[1])) == 0
    assert jnp.isfinite(log_likelihood(params, x))
    # The exact value for the far point: only the nearest component matters.
    far = -0.5 * (1e6 - 50.0) ** 2 / 1e-6 - np.log(1e-3) - 0.5 * np.log(2 * np.pi) - np.log(k)
    np.testing.assert_allclose(log_likelihood(params, x[:1]), far, rtol=1e-12)


def test_matmul_distances_are_accurate_for_offset_data():
    # D > 2 uses the matrix-product form; it must stay exact for data far from the origin.
    rng = np.random.default_rng(0)
    locs = 1e4 + rng.normal(size=(3, 6))
    x = 1e4 + rng.normal(size=(5, 6))
    params = Params(jnp.full((3,), 1 / 3), jnp.asarray(locs), jnp.asarray(0.01))
    _, expected = naive_log_joint(np.full(3, 1 / 3), locs, 0.01, x)
    np.testing.assert_allclose(log_responsibilities(params, jnp.asarray(x)), expected, atol=1e-6)


def test_assign_temperature_zero_is_argmax_and_one_samples_posterior():
    w, locs, scale, x = random_problem(5, n=3, d=1, k=3)
    params = Params(jnp.asarray(w), jnp.asarray(locs), jnp.asarray(scale * 4))
    xj = jnp.asarray(x)
    lr = log_responsibilities(params, xj)
    np.testing.assert_array_equal(assign(jax.random.key(0), params, xj, 0.0), jnp.argmax(lr, -1))
    # A tiny temperature is the MAP's limit; a huge one draws every component alike.
    for t in (1e-10, 1e-30, 1e-300):
        np.testing.assert_array_equal(assign(jax.random.key(0), params, xj, t), jnp.argmax(lr, -1))
    flat = jax.vmap(lambda kk: assign(kk, params, xj, 1e30))(
        jax.random.split(jax.random.key(2), 3000)
    )
    freq = np.stack([(flat == j).mean(0) for j in range(3)], -1)
    np.testing.assert_array_less(np.abs(freq - 1 / 3), 5 * np.sqrt(2 / 9 / 3000))
    keys = jax.random.split(jax.random.key(1), 20000)
    p = np.exp(np.asarray(lr))
    # Temperature 1: the responsibilities; 0.5: their normalized squares.
    for t, expected in ((1.0, p), (0.5, p**2 / (p**2).sum(-1, keepdims=True))):
        draws = jax.vmap(lambda kk, t=t: assign(kk, params, xj, t))(keys)
        freq = np.stack([(draws == j).mean(0) for j in range(3)], -1)
        # 5 binomial standard errors.
        se = np.sqrt(expected * (1 - expected) / 20000)
        np.testing.assert_array_less(np.abs(freq - expected), 5 * se + 1e-12)


def test_a_rows_draw_depends_on_its_number_not_on_its_batch():
    """Row n's draw is the same whether drawn in a whole table or in a chunk starting at row
    `first_row`; a component with no mass is never drawn."""
    w, locs, scale, x = random_problem(3, n=50, d=2, k=4)
    w = np.asarray(w).copy()
    w[2] = 0.0
    params = Params(jnp.asarray(w / w.sum()), jnp.asarray(locs), jnp.asarray(scale * 4))
    key = jax.random.key(9)
    whole = assign(key, params, jnp.asarray(x), 1.0)
    parts = [assign(key, params, jnp.asarray(x[a : a + 7]), 1.0, a) for a in range(0, 50, 7)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # Row numbers past 2**32 (64-bit): a chunk across the boundary draws as its two parts, and
    # not as rows 0.. do (flat logits: every draw is uniform over the 4 components).
    flat, edge = jnp.zeros((40, 4)), 2**32 - 20
    across = assign_from_logits(key, flat, 1.0, row_number(edge))
    parts = [
        assign_from_logits(key, flat[:20], 1.0, edge),
        assign_from_logits(key, flat[20:], 1.0, 2**32),
    ]
    np.testing.assert_array_equal(np.concatenate(parts), across)
    assert np.mean(across == assign_from_logits(key, flat, 1.0)) < 0.5  # 1/4 expected
    assert len(set(np.asarray(whole).tolist())) > 1 and 2 not in set(np.asarray(whole).tolist())

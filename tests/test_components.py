"""Every covariance structure and family: log densities against SciPy, and the model spec."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bayesmix.enumerate import log_joint
from bayesmix.model import (
    Mixture,
    Params,
    Priors,
    component_log_prob,
    covariance_cholesky,
    tril_inverse,
)
from bayesmix.model.spec import Init

K, D = 3, 3


def random_params(covariance: str, family: str, seed: int = 0, d: int = D) -> Params:
    rng = np.random.default_rng(seed)
    model = Mixture(K, covariance, family)
    init = Init(
        jnp.asarray(rng.dirichlet(np.ones(K))),
        jnp.asarray(rng.normal(0, 2, (K, d))),
        jnp.asarray(rng.lognormal(0, 0.3, d)),
    )
    p = model.params_from_init(init)
    # Perturb every free field in the unconstrained space so scales and correlations differ.
    u = model.to_unconstrained(p)
    u = jax.tree.map(lambda v: v + 0.5 * rng.normal(size=v.shape), u)
    return model.from_unconstrained(u)


def scipy_log_prob(p: Params, x: np.ndarray) -> np.ndarray:
    chol = np.asarray(covariance_cholesky(p))
    out = []
    for k in range(K):
        cov = chol[k] @ chol[k].T
        if p.df is None:
            out.append(stats.multivariate_normal.logpdf(x, p.locs[k], cov))
        else:
            out.append(stats.multivariate_t.logpdf(x, p.locs[k], cov, df=float(p.df)))
    return np.stack(out, -1)


@pytest.mark.parametrize("covariance", ["shared", "spherical", "diag", "full", "tied"])
@pytest.mark.parametrize("family", ["normal", "student-t"])
@pytest.mark.parametrize("jit", [False, True])
def test_component_log_prob_matches_scipy(covariance, family, jit):
    p = random_params(covariance, family, seed=hash((covariance, family)) % 1000)
    x = np.random.default_rng(1).normal(0, 3, (6, D))
    f = jax.jit(component_log_prob) if jit else component_log_prob
    np.testing.assert_allclose(f(p, jnp.asarray(x)), scipy_log_prob(p, x), rtol=1e-9)


@pytest.mark.parametrize("covariance", ["diag", "full", "tied"])
def test_one_dimension_and_far_points(covariance):
    p = random_params(covariance, "normal", d=1)
    x = np.array([[0.3], [1e5], [-2.0]])
    np.testing.assert_allclose(
        component_log_prob(p, jnp.asarray(x)), scipy_log_prob(p, x), rtol=1e-9
    )


def test_full_covariance_prior_includes_lkj():
    p = random_params("full", "normal")
    x = jnp.zeros((1, D))
    a = log_joint(p, x, Priors(lkj_concentration=1.0))
    b = log_joint(p, x, Priors(lkj_concentration=3.0))
    corr = np.asarray(p.corr_chol)
    det = np.prod(np.diagonal(corr, axis1=-2, axis2=-1) ** 2, axis=-1)
    # LKJ(eta) density ratio: det(C)^(eta1 - eta2) times the normalizers' ratio (constant in C).
    diff = float(b - a) - np.sum(2.0 * np.log(det))
    p2 = random_params("full", "normal", seed=5)
    corr2 = np.asarray(p2.corr_chol)
    det2 = np.prod(np.diagonal(corr2, axis1=-2, axis2=-1) ** 2, axis=-1)
    diff2 = float(log_joint(p2, x, Priors(lkj_concentration=3.0)) - log_joint(p2, x, Priors()))
    assert diff == pytest.approx(diff2 - np.sum(2.0 * np.log(det2)), rel=1e-9)


@pytest.mark.parametrize("covariance", ["shared", "spherical", "diag", "full", "tied"])
def test_unconstrained_round_trip(covariance):
    model = Mixture(K, covariance, "student-t")
    p = random_params(covariance, "student-t", seed=3)
    back = model.from_unconstrained(model.to_unconstrained(p))
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(back), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_fixed_df_is_not_a_free_parameter():
    model = Mixture(2, "diag", "student-t", df=4.0)
    assert "df" not in model.free_fields
    assert model.num_free_parameters(3) == 1 + 6 + 6
    assert Mixture(2, "full").num_free_parameters(3) == 1 + 6 + 12
    assert Mixture(2, "tied").num_free_parameters(3) == 1 + 6 + 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"covariance": "banana"}, "unknown covariance"),
        ({"family": "cauchy"}, "unknown family"),
        ({"df": 3.0}, "df applies to family"),
        ({"family": "student-t", "df": -1.0}, "df must be"),
    ],
)
def test_bad_specs(kwargs, message):
    from bayesmix import SpecError

    with pytest.raises(SpecError, match=message):
        Mixture(2, **kwargs)


def test_tril_inverse_is_the_inverse_of_lower_triangular_matrices():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 2, 6, 6))
    chol = np.linalg.cholesky(a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(6))
    inv = np.asarray(tril_inverse(jnp.asarray(chol)))
    np.testing.assert_allclose(inv, np.linalg.inv(chol), rtol=1e-9, atol=1e-12)
    assert np.all(np.triu(inv, 1) == 0)
    # Its derivative (-W dL W, products only) is the inverse's, in forward and reverse mode,
    # and ignores the upper triangle, which it does not read.
    one = jnp.asarray(chol[0, 0])
    for jac in (jax.jacfwd, jax.jacrev):
        np.testing.assert_allclose(
            jac(tril_inverse)(one),
            jac(lambda m: jnp.linalg.inv(jnp.tril(m)))(one),
            rtol=1e-9,
            atol=1e-12,
        )


@pytest.mark.parametrize("covariance", ["full", "tied"])
def test_full_and_tied_programs_make_no_lapack_triangular_solves(covariance):
    """jaxlib 0.10's CPU triangular solve splits a large batch over the intra-op thread pool
    and blocks until it is done: two at once deadlocked a 2-core machine (`bayesmix fit
    --covariance full` hung in Stephens' relabeling, whose program solved for two batches of
    draws side by side). The densities, the E-step and the relabeling whiten with
    `tril_inverse` instead; their compiled programs call no LAPACK triangular solve."""
    from bayesmix.infer.estep import stats
    from bayesmix.relabel import _log_resp_draws

    p = random_params(covariance, "normal")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1000, D)))
    draws = jax.tree.map(lambda v: jnp.stack([v] * 300), p)
    programs = [
        jax.jit(component_log_prob).lower(p, x),
        jax.jit(lambda p, x: stats(p, x, 1000, x[0], moment=covariance, block=256)).lower(p, x),
        _log_resp_draws._large.lower(draws, x, batch=128),  # 300 = 2 x 128 + 44: side by side
    ]
    for program in programs:
        assert "trsm" not in program.compile().as_text()

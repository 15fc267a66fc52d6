"""Prior draws and simulated data, for every covariance structure and family.

Prior draws are checked against the priors' own moments (LogNormal scales, Normal locs,
Dirichlet weights, valid correlation factors); simulated data against the covariance of the
component that generated each point.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import bayesmix as bm
from bayesmix.model import COVARIANCES, covariance_cholesky, log_prior
from bayesmix.simulate import sample_data, sample_prior

PRIORS = bm.model.check_priors(
    bm.Priors(scale_loc=np.array([0.5, -0.5]), locs_loc=np.array([1.0, -2.0])), 2
)


@pytest.mark.parametrize("covariance", COVARIANCES)
@pytest.mark.parametrize("family", ["normal", "student-t"])
def test_prior_draws_follow_the_priors(covariance, family):
    model = bm.Mixture(3, covariance, family)
    p = jax.tree.map(np.asarray, sample_prior(jax.random.key(0), model, PRIORS, 2, (20_000,)))
    assert p.weights.shape == (20_000, 3) and p.locs.shape == (20_000, 3, 2)
    np.testing.assert_allclose(p.weights.sum(-1), 1.0, atol=1e-12)
    se = 4 / np.sqrt(20_000)
    np.testing.assert_allclose(p.weights.mean(0), 1 / 3, atol=se)
    np.testing.assert_allclose(p.locs.mean(0), np.broadcast_to([1.0, -2.0], (3, 2)), atol=10 * se)
    np.testing.assert_allclose(p.locs.std(0), 10.0, rtol=se)
    log_s = np.log(p.scale)
    expected = np.array([0.5, -0.5]) if covariance in ("diag", "full", "tied") else 0.0
    if covariance == "spherical":
        expected = np.zeros(3)
    np.testing.assert_allclose(
        log_s.mean(0), np.broadcast_to(expected, log_s.shape[1:]), atol=2 * se
    )
    np.testing.assert_allclose(log_s.std(0), 2.0, rtol=se)
    if covariance in ("full", "tied"):
        c = p.corr_chol
        np.testing.assert_allclose(np.sum(c**2, -1), 1.0, atol=1e-12)  # unit-diagonal C C^T
        assert np.all(np.triu(c, 1) == 0)
    if family == "student-t":
        np.testing.assert_allclose(p.df.mean(), 2.0 / 0.1, rtol=2 * se)  # Gamma(2, 0.1)
    one = jax.tree.map(lambda v: v[0], p)
    assert np.isfinite(log_prior(one, PRIORS))


@pytest.mark.parametrize("covariance", ["spherical", "full", "tied"])
def test_simulated_data_have_each_components_covariance(covariance):
    model = bm.Mixture(2, covariance)
    truth = jax.tree.map(np.asarray, sample_prior(jax.random.key(1), model, bm.Priors(), 2))
    truth = truth._replace(weights=np.array([0.5, 0.5]))
    x, z = (np.asarray(a) for a in sample_data(jax.random.key(2), truth, 40_000))
    chol = np.asarray(covariance_cholesky(truth))
    for k in range(2):
        xk = x[z == k]
        cov = chol[k] @ chol[k].T
        se = np.sqrt(np.diag(cov) / len(xk))
        assert np.all(np.abs(xk.mean(0) - truth.locs[k]) < 5 * se)
        np.testing.assert_allclose(np.cov(xk.T), cov, atol=0.05 * np.max(np.diag(cov)))

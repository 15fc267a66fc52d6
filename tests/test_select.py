"""Choosing K: criteria at the MAP, PSIS-LOO / WAIC of posteriors, and NUTS on every model."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

import bayesmix as bm
from bayesmix.inference_data import import_arviz
from bayesmix.select import pointwise_log_likelihood, posterior_criteria


def _two_clusters(seed=0, n=60):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-3, 1, (n, 1)), rng.normal(3, 1, (n, 1))])


def test_select_k_ranks_the_true_k_first():
    x = _two_clusters()
    rows = bm.select_k(
        x, [1, 2, 3], lambda x, k: bm.fit_map(x, k, priors=bm.Priors.from_data(x), steps=400)
    )
    assert [r["k"] for r in rows][0] == 2
    assert [r["rank"] for r in rows] == [1, 2, 3]
    by_k = {r["k"]: r for r in rows}
    # BIC by hand from the reported log likelihood and parameter count (K - 1 + K + 1).
    assert by_k[2]["n_parameters"] == 4
    assert by_k[2]["bic"] == pytest.approx(-2 * by_k[2]["log_likelihood"] + 4 * np.log(120))


def test_select_k_fits_by_em_with_priors_on_the_data_scale_by_default():
    x = _two_clusters(1) * 1e3 + 5e4  # far from the tutorial's priors: "auto" is needed
    rows = bm.select_k(x, [1, 2, 3])
    assert rows[0]["k"] == 2
    explicit = bm.select_k(x, [1, 2, 3], lambda x, k: bm.fit_em(x, k, priors="auto"))
    assert [r["bic"] for r in rows] == [r["bic"] for r in explicit]
    with pytest.raises(bm.SpecError, match="K = 9 components but only 8 data points"):
        bm.select_k(x[:8], [2, 9], lambda x, k: pytest.fail("fitted before K was checked"))


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="counts Linux's mappings")
def test_select_k_releases_each_ks_compiled_programs():
    """Each K's programs took ~500 memory mappings, kept: `bayesmix select --k 1..200` crashed
    (LLVM out of mappings at K = 103). After the first K's they stay at the same count."""

    def maps() -> int:
        with open("/proc/self/maps") as fh:
            return sum(1 for _ in fh)

    def fit(x, k):
        return bm.fit_em(x, k, n_init=2, max_iter=5)

    x = _two_clusters(2)
    bm.select_k(x, [1, 2], fit)
    before = maps()
    bm.select_k(x, range(3, 6), fit)  # kept: ~1,500 more
    assert maps() - before < 500


def test_pointwise_log_likelihood_and_waic_by_hand():
    x = _two_clusters(1, 10)
    post = bm.sample_nuts(x, 2, chains=2, warmup=200, draws=200, seed=1)
    ll = pointwise_log_likelihood(post, x)
    p = post.params
    # Naive: log sum_k w_k N(x_n; loc_k, scale) for every draw, with SciPy.
    dens = np.log(p.weights)[..., None, :] + norm.logpdf(
        x[:, 0][None, None, :, None], p.locs[..., 0][..., None, :], p.scale[..., None, None]
    )
    np.testing.assert_allclose(ll, logsumexp(dens, axis=-1), rtol=1e-10)
    flat = ll.reshape(-1, ll.shape[-1])
    lppd = np.sum(logsumexp(flat, axis=0) - np.log(flat.shape[0]))
    var = np.var(flat, axis=0)  # ArviZ: the variance over draws with ddof 0
    crit = posterior_criteria(post, x)
    assert crit["elpd_waic"] == pytest.approx(lppd - np.sum(var), rel=1e-8)
    terms = logsumexp(flat, axis=0) - np.log(flat.shape[0]) - var
    assert crit["elpd_waic_se"] == pytest.approx(np.sqrt(len(terms) * np.var(terms)), rel=1e-8)
    az = import_arviz()
    if hasattr(az, "waic"):  # ArviZ 0.x (ArviZ 1 has no WAIC: bayesmix computes it as 0.x did)
        idata = az.from_dict(posterior={"scale": p.scale}, log_likelihood={"x": ll})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = az.waic(idata)
        assert crit["elpd_waic"] == pytest.approx(float(theirs.elpd_waic), rel=1e-10)
        assert crit["elpd_waic_se"] == pytest.approx(float(theirs.se), rel=1e-10)
    assert crit["elpd_loo"] == pytest.approx(crit["elpd_waic"], abs=1.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("covariance", "family"),
    [("spherical", "normal"), ("diag", "student-t"), ("full", "normal"), ("tied", "normal")],
)
def test_nuts_on_every_structure_agrees_with_the_map_for_large_n(covariance, family):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(-4, 1, (150, 2)), rng.normal(4, 0.7, (150, 2))])
    priors = bm.Priors.from_data(x)
    fit = bm.fit_map(
        x,
        2,
        covariance=covariance,
        family=family,
        priors=priors,
        init="kmeans++",
        n_init=5,
        steps=800,
        final_learning_rate=1e-3,
    )
    post = bm.sample_nuts(
        x,
        2,
        covariance=covariance,
        family=family,
        priors=priors,
        init="kmeans++",
        chains=2,
        warmup=300,
        draws=300,
    )
    assert post.diagnostics["divergences"] == 0
    locs = post.sorted_by_loc().locs.mean(axis=(0, 1))
    map_locs = fit.params.locs[np.argsort(fit.params.locs[:, 0])]
    # With 150 points per component the posterior mean sits within ~3 posterior sd (~0.1 * 3)
    # of the MAP.
    np.testing.assert_allclose(locs, map_locs, atol=0.3)

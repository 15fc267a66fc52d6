"""The mean-field variational posterior of the globals.

Checked against independent references: its ELBO is a lower bound on the exact log evidence of
the seed data (tests/exact_posterior.py); its under-dispersion there is as documented; on
well-separated data, where the posterior is close to a product of Gaussians, it matches NUTS
within Monte Carlo error plus 10% of a posterior sd.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

import bayesmix as bm
from bayesmix.infer.meanfield import fit_meanfield
from exact_posterior import exact_functionals


@pytest.fixture(scope="module")
def seed_q(seed_fit):
    return fit_meanfield(seed_fit, bm.SEED_DATA)


def test_elbo_bounds_the_exact_evidence(seed_q):
    exact = exact_functionals(bm.SEED_DATA[:, 0])
    d = seed_q.diagnostics
    assert d["elbo_se"] < 0.05
    assert d["elbo"] < exact["log_marginal_likelihood"] + 4 * d["elbo_se"]
    assert d["elbo"] > exact["log_marginal_likelihood"] - 3.0  # a useful bound, not a loose one
    assert np.isfinite(seed_q.sampler["elbo"]).all()
    assert seed_q.sampler["elbo"][-200:].mean() > seed_q.sampler["elbo"][:20].mean()


def test_under_dispersion_on_the_seed_data_as_documented(seed_q, seed_fit):
    exact = exact_functionals(bm.SEED_DATA[:, 0])
    scale = seed_q.params.scale
    assert scale.shape == (1, 1000)
    assert scale.std() < 0.5 * exact["scale_sd"]  # far narrower than the exact posterior
    assert any("too narrow" in w for w in seed_q.diagnostics["warnings"])
    # q sits at the MAP's mode: one labelling, locs near the MAP's.
    locs = np.sort(seed_q.params.locs[0, :, :, 0].mean(0))
    np.testing.assert_allclose(locs, np.sort(seed_fit.params.locs[:, 0]), atol=0.3)


@pytest.mark.slow
def test_matches_nuts_on_well_separated_data():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([-3, 0], 1, (100, 2)), rng.normal([3, 1], 1, (100, 2))])
    q = fit_meanfield(bm.fit_map(x, 2), x, seed=1)
    post = bm.sample_nuts(x, 2, draws=500, warmup=500, seed=2)
    qs, ps = q.diagnostics["summary"], post.diagnostics["summary"]
    for name in ("weights[0]", "locs[0,0]", "locs[0,1]", "locs[1,0]", "locs[1,1]", "scale"):
        sd = ps[name]["sd"]
        se = np.hypot(sd / np.sqrt(1000), sd / np.sqrt(ps[name]["ess_bulk"]))
        assert abs(qs[name]["mean"] - ps[name]["mean"]) < 4 * se + 0.1 * sd, name
        assert 0.75 < qs[name]["sd"] / sd < 1.25, name
    assert az.ess(q.params.scale) > 500  # independent draws from q


def test_bad_requests_are_refused(seed_fit):
    with pytest.raises(bm.SpecError, match=r"call bm.fit_map\(x, k\) first"):
        fit_meanfield(None, bm.SEED_DATA)
    with pytest.raises(bm.SpecError, match="call bm.fit_map"):
        fit_meanfield(bm.Posterior(seed_fit.model, seed_fit.params, {}), bm.SEED_DATA)
    with pytest.raises(bm.SpecError, match="samples must be"):
        fit_meanfield(seed_fit, bm.SEED_DATA, samples=0)
    with pytest.raises(bm.SpecError, match="draws must be"):
        fit_meanfield(seed_fit, bm.SEED_DATA, draws=0)
    with pytest.raises(bm.DataError, match="columns"):
        fit_meanfield(seed_fit, np.zeros((4, 2)))


def test_long_fits_get_the_optimized_build(monkeypatch, seed_fit):
    """Every step is a pass over the rows, and the size estimate that picks XLA's build counts
    them: at N = 1e4 the default 2000 steps ran 30x slower in the cheap build (165 s, against
    5.5 s + 8 s more compile)."""
    from bayesmix._jit import SMALL_WORK
    from bayesmix.infer import meanfield

    class Stop(Exception):
        pass

    seen = []

    def spy(*args, work, **static):
        seen.append(work)
        raise Stop

    monkeypatch.setattr(meanfield, "_meanfield_program", spy)
    x = np.random.default_rng(0).normal(size=(10_000, 1))
    with pytest.raises(Stop):
        fit_meanfield(seed_fit, x)
    with pytest.raises(Stop):
        fit_meanfield(seed_fit, bm.SEED_DATA)
    assert seen[0] >= SMALL_WORK > seen[1]  # the seed's 5 points stay cheap


def test_the_fit_does_not_depend_on_the_data_units():
    """q is fitted in units of the posterior sds (the curvature at the MAP): data in units a
    thousand times smaller give the same q, scaled (in the data's units, at sd 1e-3 the
    locs' q ended 140 posterior sds wide)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(5, 1, (100, 2))])
    q = [fit_meanfield(bm.fit_em(x * s, 2, priors="auto"), x * s, steps=500) for s in (1, 1e-3)]
    np.testing.assert_allclose(q[1].params.locs * 1e3, q[0].params.locs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(q[1].params.weights, q[0].params.weights, rtol=1e-4)


def test_samplers_start_from_an_em_fit_with_emptied_components(emptied_fit):
    # EM's sparse Dirichlet step leaves weights of exactly 0, whose log-ratio coordinates are
    # -inf: the mean-field fit said "diverged" and sample_nuts(init_params=fit.params) that the
    # start was "outside its support; start from a MAP fit's params".
    from bayesmix.infer.nuts import check_init_params
    from bayesmix.model import off_the_boundary

    x, fit = emptied_fit
    # Zeros go to an empty component's posterior mean weight, a / (n + K a); nothing else moves.
    moved = off_the_boundary(fit.params, 600, 0.5).weights
    empty = 0.5 / (600 + 4 * 0.5)
    np.testing.assert_allclose(moved, np.r_[fit.params.weights[:2], empty, empty] / (1 + 2 * empty))
    inside = fit.params._replace(weights=np.array([0.2, 0.3, 0.4, 0.1]))
    assert off_the_boundary(inside, 600, 0.5) is inside
    u = check_init_params(fit.params, fit.model, x, fit.priors, chains=2)  # sample_nuts' start
    assert all(np.all(np.isfinite(v)) for v in u if v is not None)
    q = fit_meanfield(fit, x, steps=100, draws=200)
    assert np.all(q.params.weights > 0) and np.all(np.isfinite(q.params.locs))
    # q stays near the MAP's two clusters: the empty components' weights stay small.
    assert np.median(np.sort(q.params.weights[0], -1)[:, :2].sum(-1)) < 0.05

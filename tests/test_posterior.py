"""Posterior summaries (membership, co-clustering, predictive density), the InferenceData
export and the posterior figures.

The chunked, compiled summaries are compared with direct NumPy/SciPy computations on hand-made
draws (with chunks forced small, so that padding and several chunks are exercised); the
co-clustering of NUTS draws on the seed data with the exact posterior within Monte Carlo error.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
from scipy import integrate, special, stats

import bayesmix as bm
from bayesmix import plot, posterior
from bayesmix.inference_data import to_inference_data
from bayesmix.posterior import coclustering, membership, predictive_density
from bayesmix.relabel import permute
from bayesmix.result import posterior_diagnostics
from exact_posterior import exact_functionals

MODEL = bm.Mixture(2, "spherical")


def _draws(chains=3, draws=40, seed=0) -> bm.Params:
    rng = np.random.default_rng(seed)
    shape = (chains, draws)
    return bm.Params(
        rng.dirichlet([30.0, 20.0], shape),
        np.stack([rng.normal(-2, 0.3, shape), rng.normal(3, 0.3, shape)], -1)[..., None],
        np.exp(rng.normal(0, 0.1, shape + (2,))),
    )


def _numpy_resp(p: bm.Params, x: np.ndarray) -> np.ndarray:
    """Responsibilities (S, N, K) of flat draws, by SciPy."""
    logc = np.log(p.weights)[:, None, :] + stats.norm.logpdf(
        x[None, :, :1], p.locs[:, None, :, 0], p.scale[:, None, :]
    )
    return np.exp(logc - special.logsumexp(logc, axis=-1, keepdims=True))


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(posterior, "_BLOCK", 64)  # many chunks and a padded last one


def test_membership_matches_numpy_and_undoes_label_switching(small_blocks):
    clean = _draws()
    perms = np.argsort(np.random.default_rng(1).random((3, 40, 2)), -1)
    post = bm.Posterior(MODEL, permute(clean, perms, MODEL), {})
    x = np.linspace(-4, 5, 23)[:, None]
    m = membership(post, x, level=0.8)
    flat = bm.Params(*(v.reshape((-1,) + v.shape[2:]) for v in clean[:3]))
    r = _numpy_resp(flat, x)
    np.testing.assert_allclose(m.mean, r.mean(0), atol=1e-12)
    lo, hi = np.quantile(r, [0.1, 0.9], axis=0)
    np.testing.assert_allclose(m.lower, lo, atol=1e-12)
    np.testing.assert_allclose(m.upper, hi, atol=1e-12)
    np.testing.assert_allclose(m.mean.sum(1), 1.0, atol=1e-12)
    # Without relabeling, the switched labels average the two components into each other.
    raw = membership(post, x, relabel=None)
    assert np.max(np.abs(raw.mean - 0.5)) < np.max(np.abs(m.mean - 0.5)) - 0.1


def test_predictive_density_matches_numpy_and_integrates_to_one(small_blocks):
    p = _draws()
    post = bm.Posterior(MODEL, p, {})
    grid = np.linspace(-12, 12, 2001)
    pred = predictive_density(post, grid, level=0.5)
    flat = bm.Params(*(v.reshape((-1,) + v.shape[2:]) for v in p[:3]))
    dens = np.sum(
        flat.weights[:, None, :]
        * stats.norm.pdf(grid[None, :, None], flat.locs[:, None, :, 0], flat.scale[:, None, :]),
        -1,
    )
    np.testing.assert_allclose(pred.mean, dens.mean(0), rtol=1e-10)
    np.testing.assert_allclose(pred.lower, np.quantile(dens, 0.25, axis=0), rtol=1e-10)
    assert integrate.trapezoid(pred.mean, grid) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(pred.upper, np.quantile(dens, 0.75, axis=0), rtol=1e-10)


@pytest.mark.slow
def test_coclustering_of_nuts_draws_matches_the_exact_posterior(small_blocks):
    post = bm.sample_nuts(bm.SEED_DATA, 2, seed=3)
    co = coclustering(post, bm.SEED_DATA)
    exact = exact_functionals(bm.SEED_DATA[:, 0])["coclustering"]
    np.testing.assert_allclose(co, co.T, atol=1e-12)
    flat = bm.Params(
        post.params.weights.reshape(-1, 2),
        post.params.locs.reshape(-1, 2, 1),
        np.repeat(post.params.scale.reshape(-1, 1), 2, axis=1),
    )
    r = _numpy_resp(flat, bm.SEED_DATA)
    per_draw = np.einsum("sik,sjk->sij", r, r).reshape(4, -1, 5, 5)
    for i, j in [(0, 1), (0, 4), (2, 3)]:
        assert co[i, j] == pytest.approx(per_draw[..., i, j].mean(), abs=1e-12)
        ess = az.ess(per_draw[..., i, j], method="bulk")
        se = np.sqrt(exact[i, j] * (1 - exact[i, j]) / ess)
        assert abs(co[i, j] - exact[i, j]) < 4 * se, (i, j, co[i, j], exact[i, j], se)


def test_inference_data_round_trips_through_netcdf(tmp_path):
    post = bm.Posterior(
        MODEL,
        _draws(4, 100, seed=4),
        {"diverging": np.zeros((4, 100), bool), "energy": np.ones((4, 100)), "x": np.ones(3)},
    )
    x = np.array([[-2.0], [-1.5], [3.0], [2.5], [3.5]])
    idata = to_inference_data(post, x)
    path = tmp_path / "posterior.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    # ArviZ 0.x: an InferenceData, whose groups() names its groups; ArviZ 1: a DataTree, whose
    # groups are paths ("/posterior", ...)
    groups = back.groups() if callable(back.groups) else [g.strip("/") for g in back.groups]
    assert set(groups) >= {"posterior", "sample_stats", "observed_data", "log_likelihood"}
    assert back.posterior["locs"].dims == ("chain", "draw", "component", "dim")
    assert back.posterior["scale"].dims == ("chain", "draw", "component")
    np.testing.assert_allclose(back.observed_data["x"].values, x)
    ll = back.log_likelihood["x"].values
    assert ll.shape == (4, 100, 5)
    flat = post.params
    dens = np.sum(
        flat.weights[..., None, :]
        * stats.norm.pdf(x[:, 0][:, None], flat.locs[..., None, :, 0], flat.scale[..., None, :]),
        -1,
    )
    np.testing.assert_allclose(ll, np.log(dens), rtol=1e-10)
    # ArviZ's R-hat of the exported (relabeled) draws is the one in our diagnostics.
    summary = az.summary(back, var_names=["locs"], kind="diagnostics", round_to="none")
    ours = posterior_diagnostics(post, x)["summary"]
    for j in range(2):
        assert summary.loc[f"locs[{j}, 0]", "r_hat"] == pytest.approx(ours[f"locs[{j},0]"]["r_hat"])
    assert '"stephens"' in back.posterior.attrs["relabeling"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k warnings on 5 points
        loo = az.loo(back)
    assert np.isfinite(loo.elpd_loo if hasattr(loo, "elpd_loo") else loo.elpd)  # 0.x / 1


def test_bad_requests_are_refused():
    post = bm.Posterior(MODEL, _draws(), {})
    with pytest.raises(bm.SpecError, match="level must be between 0 and 1"):
        membership(post, np.zeros((3, 1)), level=1.5)
    with pytest.raises(bm.SpecError, match="at most 5000 rows"):
        coclustering(post, np.zeros((5001, 1)))
    with pytest.raises(bm.DataError, match="columns"):
        predictive_density(post, np.zeros((4, 2)))
    empty = bm.Posterior(MODEL, bm.Params(*(v[:, :0] for v in _draws()[:3])), {})
    for fn in (membership, coclustering, predictive_density, to_inference_data):
        with pytest.raises(bm.SpecError, match="no draws"):
            fn(empty, np.zeros((3, 1)))
    with pytest.raises(bm.SpecError, match="expected a Posterior"):
        membership(bm.fit_map(bm.SEED_DATA, 2, n_init=2, steps=5), bm.SEED_DATA)


def test_figures_show_the_summaries():
    post = bm.Posterior(MODEL, _draws(4, 50), {"diverging": np.zeros((4, 50), bool)})
    x = np.array([[-2.0], [-1.5], [0.5], [3.0], [2.5]])
    m = membership(post, x)
    fig = plot.posterior_membership(x, m)
    ax = fig.axes[0]
    assert len(ax.containers) == 2  # one error-bar set per component
    assert plot.posterior_membership(x, m, ["height"]).axes[0].get_xlabel() == "height"
    grid = np.linspace(-5, 6, 50)
    fig = plot.predictive_density(predictive_density(post, grid), x)
    assert len(fig.axes[0].collections) >= 1  # the band
    with pytest.raises(bm.SpecError, match="1-D data"):
        plot.predictive_density(
            predictive_density(bm.Posterior(bm.Mixture(2), _draws2d(), {}), np.zeros((3, 2)))
        )
    fig = plot.rank(post, x)
    assert [a.get_title() for a in fig.axes[:3]] == ["weights[0]", "weights[1]", "locs[0,0]"]
    fig = plot.coclustering(coclustering(post, x))
    assert fig.axes[0].images[0].get_array().shape == (5, 5)


def test_trace_shows_the_components_relabeled_as_the_summary():
    """In the trace, a colour is one component in every chain (as in the relabeled summary):
    with chain 1's labels swapped, its raw draws showed loc -2 as component 1."""
    p = _draws(2, 50)
    swapped = bm.Params(*(np.concatenate([v[:1], v[1:, :, ::-1]]) for v in p[:3]))
    post = bm.Posterior(MODEL, swapped, {}, columns=["height"])
    x = np.array([[-2.0], [-1.5], [3.0], [2.5]])
    for data in (x, None):  # Stephens' relabeling, or the order of the locs
        fig = plot.trace(post, data)
        first = [ax.lines[0].get_ydata() for ax in fig.axes]
        assert [np.mean(v) for v in first] == pytest.approx([-2, -2], abs=0.2)
    x2 = np.c_[x, x]
    post2 = bm.Posterior(bm.Mixture(2), _draws2d(), {}, columns=["a", "b"])
    assert "of a during NUTS" in plot.trace(post2, x2).axes[0].get_title()


def _draws2d() -> bm.Params:
    rng = np.random.default_rng(5)
    return bm.Params(
        rng.dirichlet([2.0, 2.0], (1, 5)), rng.normal(size=(1, 5, 2, 2)), np.ones((1, 5))
    )

"""Chains from distinct MAP restarts, and the report when chains disagree.

Multi-chain NUTS on the seed data is compared with the exact posterior (tests/exact_posterior.py)
within Monte Carlo error (4 standard errors, s / sqrt(ESS) as in test_nuts.py). The symmetric
functional E[locs[0]] (5.52, half-way between the clusters) needs both labellings: NUTS chains
switch labels only through the rare broad-scale mode, so it is estimated from the random
permutation sampler's draws, whose ESS ArviZ measures like any other.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

import bayesmix as bm
from bayesmix.infer.multistart import map_restarts, sample_multistart, starts_from_fits
from bayesmix.relabel import random_permutation
from bayesmix.result import ebfmi, posterior_diagnostics
from exact_posterior import exact_functionals


@pytest.fixture(scope="module")
def exact():
    return exact_functionals(bm.SEED_DATA[:, 0])


@pytest.fixture(scope="module")
def fits():
    return map_restarts(bm.SEED_DATA, 2, restarts=4, seed=0)


@pytest.fixture(scope="module")
def post(fits):
    return sample_multistart(bm.SEED_DATA, 2, fits=fits, seed=1)


def _close(draws: np.ndarray, exact_mean: float, exact_sd: float) -> None:
    ess = float(az.ess(draws, method="mean"))
    se = exact_sd / np.sqrt(ess)
    assert abs(draws.mean() - exact_mean) < 4 * se, (draws.mean(), exact_mean, se, ess)


def test_restarts_are_distinct_fits(fits):
    assert len(fits) == 4 and all(isinstance(f, bm.MAPResult) for f in fits)
    starts = starts_from_fits(fits, 6)
    assert starts.locs.shape == (6, 2, 1)
    np.testing.assert_array_equal(starts.locs[4], fits[0].params.locs)
    # Different seeds reach both labellings of the main mode.
    firsts = {round(float(f.params.locs[0, 0])) for f in fits}
    assert firsts == {0, 11}


@pytest.mark.slow
def test_multistart_chains_match_the_exact_posterior(post, exact, fits):
    assert [s["neg_log_joint"] for s in post.diagnostics["starts"]] == [
        f.neg_log_joint for f in fits
    ]
    p = post.sorted_by_loc()
    _close(p.scale, exact["scale_mean"], exact["scale_sd"])
    _close(p.locs[..., 0, 0], exact["loc_min_mean"], exact["loc_min_sd"])
    _close(p.locs[..., 1, 0], exact["loc_max_mean"], exact["loc_max_sd"])
    _close(p.weights[..., 1], exact["weight_upper_mean"], exact["weight_upper_sd"])
    # Both labellings, from the random permutation sampler.
    sym = random_permutation(post, seed=0).params.locs[..., 0, 0]
    _close(sym, exact["loc_mean_first"], exact["loc_first_sd"])
    assert az.ess(sym, method="bulk") > 1000  # the check has power: se < 5.5 / 30


def _posterior(
    scale: np.ndarray, energy: np.ndarray | None = None, num_steps: np.ndarray | None = None
) -> bm.Posterior:
    chains, draws = scale.shape
    rng = np.random.default_rng(0)
    params = bm.Params(
        rng.dirichlet([20.0, 30.0], (chains, draws)),
        np.stack([rng.normal(0, 0.3, scale.shape), rng.normal(10, 0.3, scale.shape)], -1)[
            ..., None
        ],
        scale,
    )
    sampler = {"diverging": np.zeros(scale.shape, bool)}
    if energy is not None:
        sampler["energy"] = energy
    if num_steps is not None:
        sampler["num_steps"] = num_steps
    return bm.Posterior(bm.Mixture(2), params, sampler)


def test_disagreeing_chains_are_reported_with_their_means():
    rng = np.random.default_rng(1)
    scale = np.exp(rng.normal(0, 0.1, (4, 500)))
    scale[2:] *= 4.0  # two chains sit in another mode
    d = posterior_diagnostics(_posterior(scale), bm.SEED_DATA)
    row = d["summary"]["scale"]
    np.testing.assert_allclose(row["chain_means"], scale.mean(axis=1))
    assert row["r_hat"] > 1.5
    (warning,) = [w for w in d["warnings"] if "disagree" in w]
    assert "R-hat of scale" in warning and f"{scale[2].mean():.3g}" in warning
    agree = posterior_diagnostics(_posterior(np.exp(rng.normal(0, 0.1, (4, 500)))))
    assert not [w for w in agree["warnings"] if "disagree" in w]


def test_a_chain_whose_component_collapses_is_named():
    # Found on wine (178 x 13), full covariances: one chain's scale[2,10] had median 0.0014
    # against 0.12-0.33 in the others, and the warning advised only longer chains.
    rng = np.random.default_rng(2)
    scale = np.exp(rng.normal(0, 0.1, (4, 500)))
    scale[1] *= 0.01
    d = posterior_diagnostics(_posterior(scale), bm.SEED_DATA)
    (warning,) = [w for w in d["warnings"] if "collapsing" in w]
    assert warning.startswith(f"In chain 1, scale is {np.median(scale[1]):.3g} against ")
    assert "scale_scale=0.5" in warning
    scale[1] *= 30  # a third of the others: chains in other modes, not a collapse
    d = posterior_diagnostics(_posterior(scale), bm.SEED_DATA)
    assert [w for w in d["warnings"] if "disagree" in w]
    assert not [w for w in d["warnings"] if "collapsing" in w]


def test_ebfmi_matches_arviz_and_flags_sticky_energy():
    rng = np.random.default_rng(2)
    iid = rng.standard_normal((4, 2000))
    walk = np.cumsum(rng.standard_normal((4, 2000)), axis=1)  # energy that barely moves
    np.testing.assert_allclose(ebfmi(iid), az.bfmi(iid), rtol=1e-12)
    np.testing.assert_allclose(ebfmi(walk), az.bfmi(walk), rtol=1e-12)
    assert np.all(np.abs(ebfmi(iid) - 2.0) < 0.15)  # E-BFMI of iid energies is 2
    scale = np.exp(rng.normal(0, 0.1, (4, 2000)))
    d = posterior_diagnostics(_posterior(scale, energy=walk))
    assert d["ebfmi"] == pytest.approx(list(az.bfmi(walk)))
    assert any("E-BFMI" in w for w in d["warnings"])
    good = posterior_diagnostics(_posterior(scale, energy=iid))
    assert not any("E-BFMI" in w for w in good["warnings"])


def test_draws_at_the_maximum_tree_depth_are_counted_and_named():
    # Found on 5,000 x 5 rows with nearly collinear columns, full covariances: every draw took
    # 1023 leapfrog steps (13 minutes for one chain's warm-up) and no warning said so.
    rng = np.random.default_rng(3)
    scale = np.exp(rng.normal(0, 0.1, (4, 500)))
    steps = rng.choice([7, 15, 31], size=scale.shape)
    assert not [w for w in posterior_diagnostics(_posterior(scale, num_steps=steps))["warnings"]
                if "tree depth" in w]  # fmt: skip
    steps[2, :30] = 1023
    (warning,) = [
        w
        for w in posterior_diagnostics(_posterior(scale, num_steps=steps))["warnings"]
        if "tree depth" in w
    ]
    assert warning.startswith("30 of 2000 transitions hit NUTS's maximum tree depth (10 ")
    assert "--dense-mass" in warning


def test_bad_requests_are_refused_with_the_fix(fits):
    x = bm.SEED_DATA
    with pytest.raises(bm.SpecError, match="fit the model first"):
        sample_multistart(x, 2, fits=[object()])
    with pytest.raises(bm.SpecError, match="fit the model first"):
        starts_from_fits([], 2)
    with pytest.raises(bm.SpecError, match="fit the same model"):
        sample_multistart(x, 2, fits=fits, covariance="spherical")
    with pytest.raises(bm.SpecError, match="draws must be a whole number >= 1"):
        bm.sample_nuts(x, 2, draws=0)
    with pytest.raises(
        bm.SpecError, match="seed must be a whole number from 0 to 2..32 - 1, got 1.5"
    ):
        bm.sample_nuts(x, 2, seed=1.5)
    with pytest.raises(bm.SpecError, match="GiB to keep; use fewer chains or draws"):
        bm.sample_nuts(x, 2, chains=100_000, draws=100_000)
    with pytest.raises(bm.SpecError, match="restarts must be"):
        map_restarts(x, 2, restarts=0)
    with pytest.raises(bm.SpecError, match="chains must be a whole number >= 1, got 0"):
        bm.sample_multistart(x, 2, chains=0)
    one = fits[0].params
    with pytest.raises(bm.SpecError, match="init_params must be a bayesmix Params"):
        bm.sample_nuts(x, 2, init_params={"locs": one.locs})
    with pytest.raises(bm.SpecError, match=r"expected \(2, 1\) .* or \(3, 2, 1\)"):
        bm.sample_nuts(x, 2, chains=3, init_params=one._replace(locs=np.zeros((2, 2, 1))))
    with pytest.raises(bm.SpecError, match="init_params.scale is outside its support"):
        bm.sample_nuts(x, 2, init_params=one._replace(scale=np.array(-1.0)))


def test_chains_start_from_given_positions():
    # Two short chains started far apart in the tail stay distinguishable after 10 warm-up steps.
    fit = bm.fit_map(bm.SEED_DATA, 2, n_init=5)
    starts = bm.Params(
        np.stack([fit.params.weights] * 2),
        np.stack([fit.params.locs, fit.params.locs]),
        np.array([0.6, 30.0]),
    )
    post = bm.sample_nuts(bm.SEED_DATA, 2, chains=2, warmup=10, draws=1, init_params=starts)
    assert post.params.scale[0, 0] < post.params.scale[1, 0]

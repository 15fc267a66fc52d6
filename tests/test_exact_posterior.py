"""Checks that make the exact reference posterior in ``exact_posterior.py`` trustworthy.

The reference is checked against computations that share none of its algebra: a 4-D tensor
quadrature of the mixture likelihood (no assignments, no conjugacy), and importance sampling
from the prior with the mixture likelihood.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from exact_posterior import exact_functionals

SEED_DATA = np.array([0.0, 1.0, 10.0, 11.0, 12.0])
PRIOR_KEYS = ("alpha", "scale_loc", "scale_scale", "loc_loc", "loc_scale")
DEFAULT_PRIOR = dict(zip(PRIOR_KEYS, (0.5, 0.0, 2.0, 0.0, 10.0), strict=True))
SCALARS = (
    "log_marginal_likelihood",
    "scale_mean",
    "scale_median",
    "scale_sd",
    "loc_mean_first",
    "loc_first_sd",
    "loc_min_mean",
    "loc_min_sd",
    "loc_max_mean",
    "loc_max_sd",
    "weight_upper_mean",
    "weight_upper_sd",
)


def _gauss_legendre(n: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    t, w = special.roots_legendre(n)
    return 0.5 * (hi - lo) * t + 0.5 * (hi + lo), 0.5 * (hi - lo) * w


def _brute_force_k2(
    x, alpha, scale_loc, scale_scale, loc_loc, loc_scale, split, n_a=200, n_d=120, n_u=40
):
    """log p(x) and posterior moments by 4-D quadrature of prior x mixture likelihood (K=2).

    Weight w of component 1: Gauss-Jacobi, exact (the integrands are polynomials of degree
    <= N + 2 in w). Locs in rotated coordinates a +- d, d >= 0 (so max/min and the upper
    weight are smooth), log-scale: Gauss-Legendre on two panels split at log(scale) = split
    (key "below": P(log scale < split)). Returns (log p(x), dict of posterior means).
    """
    t, wt = special.roots_jacobi(x.size // 2 + 2, alpha - 1.0, alpha - 1.0)
    w, wt = ((1.0 + t) / 2.0)[:, None, None], wt / wt.sum()
    a, wa = _gauss_legendre(n_a, loc_loc - 6 * loc_scale, loc_loc + 6 * loc_scale)
    d, wd = _gauss_legendre(n_d, 0.0, 6 * loc_scale)
    lower = _gauss_legendre(n_u, scale_loc - 7 * scale_scale, split)
    upper = _gauss_legendre(n_u, split, scale_loc + 7 * scale_scale)
    u, wu = np.concatenate([lower[0], upper[0]]), np.concatenate([lower[1], upper[1]])
    wu = wu * stats.norm.pdf(u, scale_loc, scale_scale)
    hi, lo = a[:, None] + d[None, :], a[:, None] - d[None, :]  # (A, D) larger / smaller loc
    cell = 2.0 * np.outer(wa, wd) * stats.norm.pdf(hi, loc_loc, loc_scale)
    cell *= stats.norm.pdf(lo, loc_loc, loc_scale)
    names = ("one", "below", "s", "s2", "max", "max2", "min", "min2", "wup", "wup2", "first")
    acc = dict.fromkeys(names, 0.0)
    for ui, wui in zip(u, wu, strict=True):
        s = np.exp(ui)
        p_hi = stats.norm.pdf(x[:, None, None], hi, s)[:, None]
        p_lo = stats.norm.pdf(x[:, None, None], lo, s)[:, None]
        lik1 = np.prod(w * p_hi + (1.0 - w) * p_lo, axis=0)  # locs = (hi, lo): (W, A, D)
        lik2 = np.prod(w * p_lo + (1.0 - w) * p_hi, axis=0)  # locs = (lo, hi)
        m = np.einsum("w,wad->ad", wt, lik1 + lik2) * cell * wui
        m_w = np.einsum("w,wad->ad", wt, w * lik1 + (1.0 - w) * lik2) * cell * wui
        m_w2 = np.einsum("w,wad->ad", wt, w**2 * lik1 + (1.0 - w) ** 2 * lik2) * cell * wui
        m_first = np.einsum("w,wad->ad", wt, lik1 * hi + lik2 * lo) * cell * wui
        for key, val in (
            ("one", m),
            ("below", m * (ui < split)),
            ("s", s * m),
            ("s2", s**2 * m),
            ("max", hi * m),
            ("max2", hi**2 * m),
            ("min", lo * m),
            ("min2", lo**2 * m),
            ("wup", m_w),
            ("wup2", m_w2),
            ("first", m_first),
        ):
            acc[key] += val.sum()
    return np.log(acc["one"]), {key: val / acc["one"] for key, val in acc.items()}


def _prior_draws(x, k, alpha, scale_loc, scale_scale, loc_loc, loc_scale, n, seed):
    """Prior draws with log mixture likelihood and responsibilities r (n, N, K)."""
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.full(k, alpha), size=n)
    s = np.exp(rng.normal(scale_loc, scale_scale, size=n))
    locs = rng.normal(loc_loc, loc_scale, size=(n, k))
    log_c = np.log(w)[:, None, :] + stats.norm.logpdf(
        x[None, :, None], locs[:, None, :], s[:, None, None]
    )
    log_px = special.logsumexp(log_c, axis=2)  # (n, N)
    return w, s, locs, log_px.sum(axis=1), np.exp(log_c - log_px[..., None])


def test_log_marginal_and_moments_match_brute_force_quadrature():
    x = np.array([-1.0, 0.3, 2.0])
    prior = dict(zip(PRIOR_KEYS, (0.8, 0.2, 0.5, 0.5, 3.0), strict=True))
    ex = exact_functionals(x, 2, **prior)
    log_ml, mom = _brute_force_k2(x, **prior, split=np.log(ex["scale_median"]))
    assert abs(ex["log_marginal_likelihood"] - log_ml) < 1e-6
    assert mom["below"] == pytest.approx(0.5, abs=1e-6)  # the median
    for name, key in (
        ("scale", "s"),
        ("loc_max", "max"),
        ("loc_min", "min"),
        ("weight_upper", "wup"),
    ):
        assert ex[f"{name}_mean"] == pytest.approx(mom[key], abs=1e-6), name
        assert ex[f"{name}_sd"] ** 2 == pytest.approx(mom[key + "2"] - mom[key] ** 2, abs=1e-6)
    assert ex["loc_mean_first"] == pytest.approx(mom["first"], abs=1e-6)


@pytest.mark.parametrize("k", [2, 3])
def test_log_marginal_matches_prior_importance_sampling(k):
    x = np.array([0.0, 1.0, 4.0])
    log_lik = _prior_draws(x, k, **DEFAULT_PRIOR, n=200_000, seed=1)[3]
    ratio = np.exp(log_lik - log_lik.max())
    estimate = np.log(ratio.mean()) + log_lik.max()
    se = np.sqrt(np.mean(ratio**2) / ratio.mean() ** 2 - 1.0) / np.sqrt(ratio.size)  # delta method
    assert se < 0.02
    exact = exact_functionals(x, k, **DEFAULT_PRIOR)["log_marginal_likelihood"]
    assert abs(exact - estimate) < 4 * se


@pytest.mark.parametrize(
    ("x", "prior"),
    [
        ([-1.5, -0.8, 1.6, 2.4], dict(zip(PRIOR_KEYS, (0.5, 0.0, 0.5, 0.0, 3.0), strict=True))),
        ([0.0, 1.0, 4.0], DEFAULT_PRIOR),
    ],
)
def test_functionals_match_self_normalised_importance_sampling(x, prior):
    x = np.asarray(x)
    ex = exact_functionals(x, 2, **prior)
    w, s, locs, log_lik, resp = _prior_draws(x, 2, **prior, n=200_000, seed=2)
    weights = np.exp(log_lik - log_lik.max())
    weights /= weights.sum()
    assert 1.0 / np.sum(weights**2) > 5_000  # effective sample size: the check has power
    upper = np.argmax(locs, axis=1)
    draws = {
        "scale": s,
        "loc_min": locs.min(axis=1),
        "loc_max": locs.max(axis=1),
        "weight_upper": w[np.arange(s.size), upper],
        "loc_first": locs[:, 0],
    }
    checks = [(ex["scale_median"] >= s, 0.5, "median")]  # P(s <= median) = 1/2
    for name, f in draws.items():
        mean = ex["loc_mean_first" if name == "loc_first" else f"{name}_mean"]
        checks += [(f, mean, name), (f**2, ex[f"{name}_sd"] ** 2 + mean**2, name + "^2")]
    cocluster = np.einsum("snk,smk->snm", resp, resp)  # P(z_i == z_j | weights, locs, scale)
    for i, j in zip(*np.triu_indices(x.size, 1), strict=True):
        checks.append((cocluster[:, i, j], ex["coclustering"][i, j], f"cocluster{i}{j}"))
    for f, exact, name in checks:
        f = np.asarray(f, dtype=np.float64)
        estimate = np.sum(weights * f)
        se = np.sqrt(np.sum(weights**2 * (f - estimate) ** 2))
        assert abs(estimate - exact) < 4 * se, (name, estimate, exact, se)


@pytest.mark.parametrize("k", [2, 3])
def test_coclustering_symmetric_with_unit_diagonal(k):
    co = exact_functionals(SEED_DATA, k)["coclustering"]
    assert co.shape == (5, 5)
    np.testing.assert_allclose(co, co.T, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.diag(co), 1.0, rtol=0, atol=1e-12)
    assert np.all((co >= 0) & (co <= 1 + 1e-12))
    assert co[0, 1] > 0.9 and co[2, 4] > 0.9 and co[0, 4] < 0.2  # the two visible clusters


@pytest.mark.parametrize(("x", "k"), [(SEED_DATA, 2), (SEED_DATA, 3), ([0.0, 1.0, 4.0], 2)])
def test_quadrature_converged(x, k):
    base = exact_functionals(np.asarray(x), k)
    fine = exact_functionals(np.asarray(x), k, n_nodes=2000, cutoff=120.0)
    assert base.keys() == fine.keys()
    for key in base:
        np.testing.assert_allclose(base[key], fine[key], rtol=1e-6, atol=1e-12, err_msg=key)


def test_label_symmetry_and_equivariance():
    ex = exact_functionals(SEED_DATA)
    assert set(SCALARS) | {"coclustering"} == ex.keys()
    assert ex["loc_min_mean"] < ex["loc_mean_first"] < ex["loc_max_mean"]
    # E[locs[0]] = E[(min + max) / 2] by label symmetry.
    assert ex["loc_mean_first"] == pytest.approx((ex["loc_min_mean"] + ex["loc_max_mean"]) / 2)
    perm = np.array([3, 0, 4, 2, 1])
    permuted = exact_functionals(SEED_DATA[perm])
    # x -> c x + b with the priors moved along: scale * c, locs * c + b, log p(x) - N log c.
    c, b = 3.7, -2.0
    moved = exact_functionals(c * SEED_DATA + b, scale_loc=np.log(c), loc_loc=b, loc_scale=10 * c)
    for key in SCALARS:
        assert permuted[key] == pytest.approx(ex[key], rel=1e-9), key
        if key == "log_marginal_likelihood":
            expected = ex[key] - SEED_DATA.size * np.log(c)
        elif key in ("loc_mean_first", "loc_min_mean", "loc_max_mean"):
            expected = c * ex[key] + b
        else:
            expected = c * ex[key] if key.startswith(("scale", "loc")) else ex[key]
        assert moved[key] == pytest.approx(expected, rel=1e-9), key
    np.testing.assert_allclose(
        permuted["coclustering"], ex["coclustering"][np.ix_(perm, perm)], atol=1e-12
    )
    np.testing.assert_allclose(moved["coclustering"], ex["coclustering"], atol=1e-12)
    assert "loc_max_mean" not in exact_functionals(SEED_DATA[:3], 3)


def test_too_many_assignments_rejected():
    with pytest.raises(ValueError):
        exact_functionals(np.zeros(21), 2)

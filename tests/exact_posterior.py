"""Exact posterior functionals of the 1-D Gaussian mixture of Pyro's GMM tutorial.

Reference values for testing the NUTS sampler. Deliberately independent of bayesmix, JAX and
any MCMC: pure NumPy/SciPy. The model is

    weights ~ Dirichlet(alpha * ones(k)),  scale ~ LogNormal(scale_loc, scale_scale),
    locs_j ~ Normal(loc_loc, loc_scale) iid,  z_n ~ Categorical(weights),
    x_n ~ Normal(locs[z_n], scale).

Method: sum over all k**N assignment vectors z. Given z, the weights (Dirichlet-multinomial)
and, given z and the scale s, each loc (Normal-Normal) integrate out in closed form, and
w | z ~ Dirichlet(alpha + n), loc_j | z, s ~ Normal(m_j, v_j) independently. The remaining 1-D
integral over u = log(s) is done by Gauss-Legendre quadrature on the interval where the
integrand (and its s**2-weighted version) is within exp(-cutoff) of its maximum.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import optimize, special, stats

MAX_ASSIGNMENTS = 2**20


def _assignments(n: int, k: int) -> np.ndarray:
    """All k**n assignment vectors, shape (k**n, n)."""
    return np.array(list(itertools.product(range(k), repeat=n)), dtype=np.int64).reshape(-1, n)


def exact_functionals(
    x: np.ndarray,
    k: int = 2,
    alpha: float = 0.5,
    scale_loc: float = 0.0,
    scale_scale: float = 2.0,
    loc_loc: float = 0.0,
    loc_scale: float = 10.0,
    *,
    n_nodes: int = 1000,
    cutoff: float = 80.0,
) -> dict[str, float | np.ndarray]:
    """Exact posterior functionals for data ``x`` of shape (N,).

    Returns a dict of floats, except ``coclustering`` (shape (N, N), P(z_i == z_j | x)):
    ``log_marginal_likelihood`` (log p(x)), ``scale_mean``, ``scale_median``, ``scale_sd``,
    ``loc_mean_first`` (E[locs[0]]) and ``loc_first_sd``; for ``k == 2`` only (no closed form
    for the max of more than two normals) also ``loc_min_mean``, ``loc_min_sd``,
    ``loc_max_mean``, ``loc_max_sd``, ``weight_upper_mean`` and ``weight_upper_sd`` (weight of
    the component with the larger loc). ``n_nodes`` and ``cutoff`` (log-density drop that
    bounds the integration interval) control the quadrature over log(scale).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    n_data = x.size
    if k < 1 or n_data < 1 or k**n_data > MAX_ASSIGNMENTS:
        raise ValueError(f"need k >= 1, N >= 1 and k**N <= {MAX_ASSIGNMENTS}")
    z = _assignments(n_data, k)  # (Z, N)
    onehot = (z[:, :, None] == np.arange(k)).astype(np.float64)  # (Z, N, K)
    counts = onehot.sum(axis=1)  # (Z, K)
    sums = np.einsum("znk,n->zk", onehot, x)
    means = np.where(counts > 0, sums / np.maximum(counts, 1.0), loc_loc)
    within_ss = np.einsum("znk,znk->zk", onehot, (x[None, :, None] - means[:, None, :]) ** 2)
    log_dirmult = (
        special.gammaln(k * alpha)
        - special.gammaln(k * alpha + n_data)
        + np.sum(special.gammaln(alpha + counts) - special.gammaln(alpha), axis=1)
    )  # (Z,)
    s0sq = loc_scale**2

    def log_joint(u: np.ndarray) -> np.ndarray:
        """log p(x, z, log-scale = u), weights and locs integrated out; shape (Z, U)."""
        s2 = np.exp(2.0 * u)[None, None, :]  # (1, 1, U)
        n, ss, mb = counts[:, :, None], within_ss[:, :, None], means[:, :, None]
        log_ml = (
            -0.5 * n * np.log(2.0 * np.pi * s2)
            - 0.5 * np.log1p(n * s0sq / s2)
            - 0.5 * ss / s2
            - 0.5 * n * (mb - loc_loc) ** 2 / (s2 + n * s0sq)
        )  # (Z, K, U); zero for empty components
        return (
            stats.norm.logpdf(u, scale_loc, scale_scale)[None, :]
            + log_dirmult[:, None]
            + log_ml.sum(axis=1)
        )

    # Integration interval in u = log(s): where log p(x, u) or log p(x, u) + 2u is within cutoff
    # of its maximum, searched on a coarse grid of +-30 prior standard deviations.
    coarse = scale_loc + scale_scale * np.linspace(-30.0, 30.0, 3001)
    lp = special.logsumexp(log_joint(coarse), axis=0)
    keep = (lp > lp.max() - cutoff) | (lp + 2 * coarse > np.max(lp + 2 * coarse) - cutoff)
    step = coarse[1] - coarse[0]
    lo, hi = coarse[keep].min() - step, coarse[keep].max() + step
    gl_t, gl_w = special.roots_legendre(n_nodes)

    def nodes(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        return 0.5 * (b - a) * gl_t + 0.5 * (b + a), 0.5 * (b - a) * gl_w

    u, wu = nodes(lo, hi)
    lj = log_joint(u)
    log_ml_x = float(special.logsumexp(lj + np.log(wu)[None, :]))
    post = np.exp(lj - log_ml_x) * wu[None, :]  # (Z, U): posterior mass of (z, node)

    def expect(f: np.ndarray) -> float:
        return float(np.sum(post * f))

    def sd(mean: float, second: float) -> float:
        return float(np.sqrt(max(second - mean**2, 0.0)))

    scale = np.exp(u)[None, :]
    out: dict[str, float | np.ndarray] = {"log_marginal_likelihood": log_ml_x}
    out["scale_mean"] = expect(scale)
    out["scale_sd"] = sd(out["scale_mean"], expect(scale**2))
    # Median: root of the integral of a Chebyshev interpolant of the density of u.
    density = np.polynomial.Chebyshev.interpolate(
        lambda t: np.exp(special.logsumexp(log_joint(t), axis=0) - log_ml_x),
        n_nodes - 1,
        domain=[lo, hi],
    )
    cdf = density.integ(lbnd=lo)
    median_u = optimize.brentq(lambda t: cdf(t) - 0.5, lo, hi, xtol=1e-14, rtol=1e-14)
    out["scale_median"] = float(np.exp(median_u))

    p_z = post.sum(axis=1)  # (Z,)
    out["coclustering"] = np.einsum("z,zij->ij", p_z, (z[:, :, None] == z[:, None, :]) * 1.0)

    # loc_j | z, s ~ Normal(m_j, v_j); shapes (Z, K, U)
    s2 = np.exp(2.0 * u)[None, None, :]
    v = 1.0 / (1.0 / s0sq + counts[:, :, None] / s2)
    m = v * (loc_loc / s0sq + sums[:, :, None] / s2)
    out["loc_mean_first"] = expect(m[:, 0])
    out["loc_first_sd"] = sd(out["loc_mean_first"], expect(m[:, 0] ** 2 + v[:, 0]))

    if k == 2:
        # Clark (1961): moments of the max of two independent normals.
        m1, m2, v1, v2 = m[:, 0], m[:, 1], v[:, 0], v[:, 1]
        theta = np.sqrt(v1 + v2)
        a = (m1 - m2) / theta
        p1, p2, dens = special.ndtr(a), special.ndtr(-a), stats.norm.pdf(a)
        e_max = m1 * p1 + m2 * p2 + theta * dens
        e_max2 = (m1**2 + v1) * p1 + (m2**2 + v2) * p2 + (m1 + m2) * theta * dens
        e_min, e_min2 = m1 + m2 - e_max, m1**2 + v1 + m2**2 + v2 - e_max2
        for name, first, second in (("loc_min", e_min, e_min2), ("loc_max", e_max, e_max2)):
            out[f"{name}_mean"] = expect(first)
            out[f"{name}_sd"] = sd(out[f"{name}_mean"], expect(second))
        # w | z ~ Dirichlet(alpha + n), independent of the locs given z.
        conc = alpha + counts
        tot = conc.sum(axis=1, keepdims=True)
        ew, ew2 = conc / tot, conc * (conc + 1.0) / (tot * (tot + 1.0))  # (Z, K)
        w_up = p1 * ew[:, :1] + p2 * ew[:, 1:]
        w_up2 = p1 * ew2[:, :1] + p2 * ew2[:, 1:]
        out["weight_upper_mean"] = expect(w_up)
        out["weight_upper_sd"] = sd(out["weight_upper_mean"], expect(w_up2))
    return out


if __name__ == "__main__":
    for key, value in exact_functionals(np.array([0.0, 1.0, 10.0, 11.0, 12.0])).items():
        print(key, np.array2string(np.asarray(value), precision=9), sep=" = ")

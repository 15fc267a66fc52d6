"""Rank-normalized split R-hat and bulk / tail effective sample sizes (Vehtari et al. 2021).

The same estimators, step for step, as ArviZ's `az.rhat(v)` (method "rank"), `az.ess(v,
method="bulk")` and `az.ess(v, method="tail")` on a (chains, draws) array (tested to agree to
1e-10 with ArviZ 0.x; ArviZ 1 rounds the tail quantiles as numpy.quantile does, which can count
one draw differently where a quantile falls on it), in NumPy alone. Why not ArviZ: importing it
(with xarray, pandas, scipy.stats and matplotlib) took 1.0-2.4 s of a warm `bayesmix demo`
whose whole computation takes ~0.3 s; ArviZ remains the reference in the tests and the
library's for InferenceData export and LOO. The normal quantiles come from the standard library
(`statistics.NormalDist`): importing scipy.special alone takes 0.5 s.

Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021). Rank-normalization, folding, and
localization: an improved R-hat for assessing convergence of MCMC. Bayesian Analysis 16(2).
"""

from __future__ import annotations

import statistics

import numpy as np

__all__ = ["ess_bulk", "ess_tail", "rhat"]

MIN_DRAWS = 4  # fewer draws per chain: the estimates are NaN (as in ArviZ)


def _norm_ppf(p: np.ndarray) -> np.ndarray:
    """The standard normal quantile function for 0 < p < 1 (the standard library's, Wichura's
    AS241: within 1e-15 of scipy.special.ndtri)."""
    inv_cdf = statistics.NormalDist().inv_cdf
    return np.array([inv_cdf(e) for e in p.ravel().tolist()], dtype=float).reshape(p.shape)


def _rank(a: np.ndarray) -> np.ndarray:
    """Ranks 1..size of every element (ties get their average rank), shaped like `a`."""
    flat = a.ravel()
    order = np.argsort(flat, kind="mergesort")
    first = np.r_[True, flat[order][1:] != flat[order][:-1]]
    group = np.empty(flat.size, dtype=np.intp)
    group[order] = np.cumsum(first)
    bounds = np.r_[np.nonzero(first)[0], flat.size]
    return (0.5 * (bounds[group] + bounds[group - 1] + 1)).reshape(a.shape)


def _z_scale(a: np.ndarray) -> np.ndarray:
    """Rank normalization: normal scores of the pooled ranks (Blom's offset 3/8)."""
    return _norm_ppf((_rank(a) - 0.375) / (a.size + 0.25))


def _split(a: np.ndarray) -> np.ndarray:
    """(chains, draws) -> (2 x chains, draws // 2): each chain's halves as two chains (the
    middle draw of an odd count is left out)."""
    half = a.shape[1] // 2
    return np.vstack((a[:, :half], a[:, -half:]))


def _fft_len(n: int) -> int:
    """The smallest 2^i 3^j 5^k >= n (scipy.fftpack.next_fast_len, ArviZ's FFT length)."""
    while True:
        m = n
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1


def _autocov(a: np.ndarray) -> np.ndarray:
    """Autocovariance of every row at lags 0..draws-1 (biased, divided by draws), by FFT."""
    n = a.shape[1]
    m = _fft_len(2 * n)
    f = np.fft.rfft(a - a.mean(axis=1, keepdims=True), n=m, axis=1)
    return np.fft.irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n


def _ess(a: np.ndarray) -> float:
    """Effective sample size of (chains, draws) draws: Geyer's initial monotone sequence on the
    multi-chain autocorrelations."""
    a = np.asarray(a, dtype=float)
    if np.isnan(a).any():
        return np.nan
    if np.max(a) - np.min(a) < np.finfo(float).resolution:
        return float(a.size)
    chains, n = a.shape
    acov = _autocov(a)
    mean_var = np.mean(acov[:, 0]) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus += np.var(a.mean(axis=1), ddof=1)
    rho = np.zeros(n)
    rho[0] = rho_even = 1.0
    rho[1] = rho_odd = 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    t = 1
    while t < n - 3 and rho_even + rho_odd > 0.0:  # initial positive sequence
        rho_even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        rho_odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:  # made monotone
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1 : max_t + 2])
    tau = max(tau, 1 / np.log10(a.size))
    return np.nan if np.isnan(rho).any() else float(a.size / tau)


def _valid(a: np.ndarray, min_chains: int) -> bool:
    return a.shape[0] >= min_chains and a.shape[1] >= MIN_DRAWS and not np.isnan(a).any()


def _quantile(a: np.ndarray, prob: float) -> float:
    """The type-7 quantile of all draws, computed as ArviZ does (scipy's mquantiles)."""
    x = np.sort(a, axis=None)
    aleph = x.size * prob + (1.0 - prob)
    k = int(np.floor(np.clip(aleph, 1, x.size - 1)))
    gamma = np.clip(aleph - k, 0, 1)
    return (1.0 - gamma) * x[k - 1] + gamma * x[k]


def ess_bulk(draws: np.ndarray) -> float:
    """Bulk ESS of (chains, draws): ESS of the rank-normalized split chains."""
    a = np.atleast_2d(np.asarray(draws, dtype=float))
    return _ess(_z_scale(_split(a))) if _valid(a, 1) else np.nan


def ess_tail(draws: np.ndarray) -> float:
    """Tail ESS of (chains, draws): the smaller ESS of the 5% and 95% quantile indicators."""
    a = np.atleast_2d(np.asarray(draws, dtype=float))
    if not _valid(a, 1):
        return np.nan
    return min(_ess(_split(a <= _quantile(a, p))) for p in (0.05, 0.95))


def rhat(draws: np.ndarray) -> float:
    """Rank-normalized split R-hat of (chains, draws): the larger of the bulk R-hat and the
    R-hat of the folded draws |x - median|; NaN for fewer than 2 chains."""
    a = np.atleast_2d(np.asarray(draws, dtype=float))
    if not _valid(a, 2):
        return np.nan
    split = _split(a)
    folded = np.abs(split - np.median(split))
    return max(_rhat(_z_scale(split)), _rhat(_z_scale(folded)))


def _rhat(a: np.ndarray) -> float:
    """Split R-hat of (chains, draws), no rank normalization: inf where every chain is stuck
    at its own value (no variance within, some between)."""
    n = a.shape[1]
    between = n * np.var(a.mean(axis=1), ddof=1)
    within = np.mean(np.var(a, axis=1, ddof=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sqrt((between / within + n - 1) / n))

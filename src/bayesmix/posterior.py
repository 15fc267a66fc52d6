"""Posterior summaries of the data: membership, co-clustering, the predictive density.

Every summary averages over the posterior draws, so that it carries the uncertainty of the
globals, not only of the assignments:

- membership: p(z_n = k | x, draw s) for every draw, relabeled consistently (Stephens by
  default), averaged over draws with a central credible interval per point and component;
- co-clustering: P(z_i = z_j | x) = mean_s sum_k r_sik r_sjk, invariant to the labels;
- predictive density: p(x* | draw s) over a set of points, averaged over draws (the posterior
  predictive) with a pointwise credible band.

Draws are processed in fixed-size chunks (one compiled program per shape), so memory stays
bounded for many draws and many points.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from .data import as_data, by_name, model_data
from .enumerate import log_responsibilities, log_weighted
from .errors import SpecError
from .model import Params
from .result import Posterior, as_posterior

__all__ = [
    "MAX_COCLUSTERING_POINTS",
    "Membership",
    "PredictiveDensity",
    "coclustering",
    "membership",
    "predictive_density",
]

#: The co-clustering matrix is (N, N): refuse beyond this many points (pass a subset instead).
MAX_COCLUSTERING_POINTS = 5000
# Elements of a (draws, points, K) block held at once.
_BLOCK = 2**22


class Membership(NamedTuple):
    """Posterior membership probabilities. mean, lower, upper: (N, K); the interval is the
    central `level` credible interval of p(z_n = k | x, globals) over the draws."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float


class PredictiveDensity(NamedTuple):
    """Posterior predictive density at `points` (G, D): mean (G,) (= p(x* | x)); lower, upper
    (G,): the central `level` credible band of p(x* | globals) over the draws."""

    points: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float


def _check(post: object, level: float) -> Posterior:
    """The posterior in `post` (`as_posterior`), with `level` checked."""
    if not 0 < level < 1:
        raise SpecError(f"level must be between 0 and 1 (e.g. 0.9), got {level!r}")
    return as_posterior(post)


def _flat(params: Params) -> Params:
    return jax.tree.map(lambda v: jnp.asarray(np.reshape(v, (-1,) + np.shape(v)[2:])), params)


@partial(jax.jit, static_argnames=("fn", "chunk"))
def _pointwise(params: Params, x: jnp.ndarray, q: jnp.ndarray, *, fn, chunk: int):
    """fn(draw, points (C, D)) -> (C, ...) for every draw; mean and quantiles q over draws,
    computed `chunk` points at a time. x: (M * chunk, D)."""
    blocks = x.reshape(-1, chunk, x.shape[-1])

    def one(xb):
        values = jax.vmap(fn, in_axes=(0, None))(params, xb)  # (S, C, ...)
        return values.mean(axis=0), jnp.quantile(values, q, axis=0)

    mean, quant = jax.lax.map(one, blocks)
    mean = mean.reshape((-1,) + mean.shape[2:])
    quant = jnp.moveaxis(quant, 1, 0)
    return mean, quant.reshape(quant.shape[:1] + (-1,) + quant.shape[3:])


def _over_points(fn, params: Params, x: np.ndarray, level: float):
    """Pad the points to whole chunks, run `_pointwise`, cut the padding off."""
    s, k = params.locs.shape[0], params.locs.shape[1]
    n = x.shape[0]
    chunk = int(max(1, min(n, _BLOCK // max(1, s * k))))
    chunk = 1 << (chunk.bit_length() - 1)  # a power of two: few distinct programs
    padded = -(-n // chunk) * chunk
    xp = np.concatenate([x, np.repeat(x[:1], padded - n, axis=0)])
    dtype = params.locs.dtype  # the draws' (float32 unless JAX's float64 is on)
    q = jnp.asarray([(1 - level) / 2, (1 + level) / 2], dtype)
    mean, quant = _pointwise(params, jnp.asarray(xp, dtype), q, fn=fn, chunk=chunk)
    return np.asarray(mean[:n]), np.asarray(quant[0, :n]), np.asarray(quant[1, :n])


def _responsibilities(p: Params, x: jnp.ndarray) -> jnp.ndarray:
    return jnp.exp(log_responsibilities(p, x))


def _density(p: Params, x: jnp.ndarray) -> jnp.ndarray:
    return jnp.exp(logsumexp(log_weighted(p, x), axis=-1))


def membership(
    post: Posterior, data: object, *, relabel: str | None = "stephens", level: float = 0.9
) -> Membership:
    """Membership probabilities of the rows of `data` (N, D), averaged over the draws.

    relabel: how components are matched across draws before averaging: "stephens" (KL
    relabeling on `data`; the default), "order" (by the first loc coordinate) or None (the
    draws' own labels, e.g. a posterior already relabeled by `bayesmix.relabel.relabel`).
    Without relabeling, label switching would average the components into each other.
    """
    post = _check(post, level)
    x = model_data(data, post.columns, post.params.locs.shape[-1])
    params = post.params
    if relabel is not None:
        from .relabel import relabel as _relabel

        params = _relabel(post, data if relabel == "stephens" else None, method=relabel).params
    mean, lower, upper = _over_points(_responsibilities, _flat(params), x, level)
    return Membership(mean, lower, upper, float(level))


def coclustering(post: Posterior, data: object) -> np.ndarray:
    """P(z_i = z_j | x) for every pair of rows of `data` (N, D): (N, N), symmetric, unit
    diagonal; invariant to the labels (no relabeling needed). N <= MAX_COCLUSTERING_POINTS."""
    post = _check(post, 0.5)
    x = model_data(data, post.columns, post.params.locs.shape[-1])
    n = x.shape[0]
    if n > MAX_COCLUSTERING_POINTS:
        raise SpecError(
            f"the co-clustering matrix of {n} points has {n * n:,} entries; pass at most "
            f"{MAX_COCLUSTERING_POINTS} rows (e.g. a random subset)"
        )
    params = _flat(post.params)
    s, k = params.locs.shape[:2]
    chunk = int(max(1, min(s, _BLOCK // max(1, n * k))))
    padded = -(-s // chunk) * chunk
    mask = np.arange(padded) < s
    idx = np.where(mask, np.arange(padded), 0).reshape(-1, chunk)
    dtype = params.locs.dtype
    total = _cocluster_sum(
        params, jnp.asarray(x, dtype), jnp.asarray(idx), jnp.asarray(mask, dtype)
    )
    co = np.asarray(total) / s
    np.fill_diagonal(co, 1.0)
    return co


@jax.jit
def _cocluster_sum(params: Params, x: jnp.ndarray, idx: jnp.ndarray, mask: jnp.ndarray):
    mask = mask.reshape(idx.shape)

    def one(total, block):
        ids, m = block
        r = jax.vmap(_responsibilities, in_axes=(0, None))(
            jax.tree.map(lambda v: v[ids], params), x
        )  # (C, N, K)
        return total + jnp.einsum("c,cik,cjk->ij", m, r, r), None

    zero = jnp.zeros((x.shape[0], x.shape[0]), x.dtype)
    return jax.lax.scan(one, zero, (idx, mask))[0]


def predictive_density(post: Posterior, points: object, *, level: float = 0.9) -> PredictiveDensity:
    """The posterior predictive density p(x* | x) at `points` (G, D) (a 1-D array is G points
    of 1-D data), with a pointwise `level` credible band of p(x* | globals). Invariant to the
    labels."""
    post = _check(post, level)
    d = post.params.locs.shape[-1]
    pts = np.asarray(by_name(points, post.columns), dtype=np.float64)
    pts = pts[:, None] if pts.ndim == 1 and d == 1 else pts
    pts = as_data(pts, for_fit=False, dim=d, source="points")
    mean, lower, upper = _over_points(_density, _flat(post.params), pts, level)
    return PredictiveDensity(pts, mean, lower, upper, float(level))

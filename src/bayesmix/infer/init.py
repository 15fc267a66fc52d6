"""Initial values of the globals, drawn in batches so that many restarts are one computation.

Each scheme returns a structure-free `Init` (weights, locs, spread per column) that the model
spec turns into its parameters (`Mixture.params_from_init`).
`seed` is the tutorial's scheme: uniform weights, spread sqrt(var / 2) (so the shared scale is
the tutorial's sqrt(var / 2)), locs at K distinct data points chosen uniformly. `kmeans++`
places the locs by D^2 sampling and sets the spread from the residuals to the nearest loc;
`kmeans` (EM's default) runs greedy k-means++ and a few Lloyd iterations on a subsample, then
sets the weights and spread from the rows nearest each loc.

Every scheme takes an optional `n_valid`: only the first n_valid rows of x are data (the rest
pad x to a size whose compiled program serves many row counts); None: all rows.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..model import Init
from ..model.components import scaled_sq_distances
from .estep import data_rows, row_mask, row_mean, row_var

__all__ = [
    "INITS",
    "distinct_indices",
    "init_kmeans",
    "init_kmeanspp",
    "init_seed",
    "kmeans_objective",
    "kmeanspp_locs",
    "lloyd",
    "nearest",
]


def _uniform_weights(k: int, dtype) -> jnp.ndarray:
    return jnp.full((k,), 1.0 / k, dtype)


def distinct_indices(key: jax.Array, n: int, k: int) -> jnp.ndarray:
    """A uniformly random set of k distinct indices in [0, n) (Floyd's algorithm): (k,) int.

    O(k^2) work and no (n,)-sized temporaries, so it stays cheap for millions of rows and
    compiles fast under vmap.
    """
    keys = jax.random.split(key, k)

    def body(i, idx):
        j = n - k + i
        t = jax.random.randint(keys[i], (), 0, j + 1, dtype=idx.dtype)
        return idx.at[i].set(jnp.where(jnp.any(idx == t), j, t).astype(idx.dtype))

    return jax.lax.fori_loop(0, k, body, jnp.full((k,), -1, jnp.int32))


def _spread(x: jnp.ndarray, n_valid=None) -> jnp.ndarray:
    """sqrt(var / 2) per column of the data rows of x (N, D) (the first n_valid; all for None)."""
    return jnp.sqrt(row_var(x, n_valid, ddof=1) / 2.0)


def init_seed(key: jax.Array, x: jnp.ndarray, k: int, n_valid=None) -> Init:
    """The tutorial's initialization for one restart. x: (N, D) -> Init with locs (K, D)."""
    idx = distinct_indices(key, data_rows(x, n_valid), k)
    return Init(_uniform_weights(k, x.dtype), x[idx], _spread(x, n_valid))


def kmeanspp_locs(
    key: jax.Array, x: jnp.ndarray, k: int, trials: int = 1, n_valid=None
) -> jnp.ndarray:
    """k-means++ seeding of k locs among the rows. x: (N, D) -> (K, D).

    Each loc after the first is drawn by D^2 sampling; with `trials` > 1 (greedy k-means++, as
    scikit-learn's) that many candidates are drawn and the one that most lowers the k-means
    objective is kept. trials=1 is plain k-means++.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a whole number >= 1, got {trials!r}")
    mask = row_mask(x, n_valid)
    keys = jax.random.split(key, k)
    first = x[jax.random.randint(keys[0], (), 0, data_rows(x, n_valid))]
    locs = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, axis=-1)
    if mask is not None:  # padding rows are never drawn
        d2 = jnp.where(mask, d2, 0.0)
    uniform = jnp.zeros_like(d2) if mask is None else jnp.where(mask, 0.0, -jnp.inf)

    def body(i, carry):
        locs, d2 = carry
        # D^2 sampling; if every point already sits on a loc, fall back to uniform.
        logits = jnp.where(d2.sum() > 0, jnp.log(d2), uniform)
        cand = x[jax.random.categorical(keys[i], logits, shape=(trials,))]  # (T, D)
        new_d2 = jnp.minimum(d2, jnp.sum((x[None] - cand[:, None]) ** 2, axis=-1))  # (T, N)
        best = jnp.argmin(new_d2.sum(axis=1))
        return locs.at[i].set(cand[best]), new_d2[best]

    locs, _ = jax.lax.fori_loop(1, k, body, (locs, d2))
    return locs


def nearest(x: jnp.ndarray, locs: jnp.ndarray) -> jnp.ndarray:
    """Index of the nearest loc (Euclidean) of each row: (N, D), (K, D) -> (N,) int."""
    return jnp.argmin(scaled_sq_distances(x, locs, jnp.ones_like(locs)), axis=1)


def kmeans_objective(x: jnp.ndarray, locs: jnp.ndarray) -> jnp.ndarray:
    """Sum over rows of the squared distance to the nearest loc: (N, D), (K, D) -> ()."""
    return jnp.sum((x - locs[nearest(x, locs)]) ** 2)


def lloyd(x: jnp.ndarray, locs: jnp.ndarray, n_iter: int, n_valid=None) -> jnp.ndarray:
    """`n_iter` Lloyd iterations (assign each row to its nearest loc, move each loc to the mean
    of its rows; a loc left without rows stays put). x: (N, D) (its first n_valid rows; all
    for None), locs (K, D) -> (K, D).

    Each iteration never increases `kmeans_objective`.
    """
    k, mask = locs.shape[0], row_mask(x, n_valid)

    def body(_, locs):
        onehot = jax.nn.one_hot(nearest(x, locs), k, dtype=x.dtype)  # (N, K)
        if mask is not None:
            onehot = onehot * mask[:, None]
        counts = onehot.sum(axis=0)
        sums = onehot.T @ x
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], locs)

    return jax.lax.fori_loop(0, n_iter, body, locs)


def _init_from_locs(
    x: jnp.ndarray, locs: jnp.ndarray, *, count_weights: bool, n_valid=None
) -> Init:
    """Init around given locs (K, D): spread per column from the residuals of the rows to their
    nearest loc (the data's spread if the residuals vanish); weights uniform, or the shares of
    rows nearest each loc when `count_weights` (floored so that no component starts empty)."""
    k = locs.shape[0]
    labels = nearest(x, locs)
    resid = jnp.sqrt(row_mean((x - locs[labels]) ** 2, n_valid))
    fallback = _spread(x, n_valid)
    spread = jnp.where(resid > 1e-3 * fallback, resid, fallback)
    if count_weights:
        if n_valid is not None:  # padding rows counted in no component
            labels = jnp.where(row_mask(x, n_valid), labels, k)
        counts = jnp.bincount(labels, length=k).astype(x.dtype) + 1.0
        weights = counts / counts.sum()
    else:
        weights = _uniform_weights(k, x.dtype)
    return Init(weights, locs, spread)


def init_kmeanspp(key: jax.Array, x: jnp.ndarray, k: int, n_valid=None) -> Init:
    """k-means++ seeding of the locs for one restart, uniform weights. x: (N, D) -> Init with
    locs (K, D)."""
    locs = kmeanspp_locs(key, x, k, n_valid=n_valid)
    return _init_from_locs(x, locs, count_weights=False, n_valid=n_valid)


#: The "kmeans" scheme's settings: Lloyd iterations, rows it clusters (drawn with replacement
#: from the sample), candidates per greedy k-means++ draw (scikit-learn's 2 + log k at K = 8).
LLOYD_ITERS = 10
KMEANS_ROWS = 16_384
KMEANSPP_TRIALS = 4


def init_kmeans(key: jax.Array, x: jnp.ndarray, k: int, n_valid=None) -> Init:
    """k-means for one restart: greedy k-means++ seeding and `LLOYD_ITERS` Lloyd iterations on
    `KMEANS_ROWS` rows drawn from x; then weights are the shares of the rows of x nearest each
    loc and the spread comes from their residuals. x: (N, D) -> Init with locs (K, D)."""
    k_rows, k_seed = jax.random.split(key)
    rows, rows_valid = x, n_valid
    if x.shape[0] > KMEANS_ROWS:  # drawn among the data rows: all valid
        rows = x[jax.random.randint(k_rows, (KMEANS_ROWS,), 0, data_rows(x, n_valid))]
        rows_valid = None
    seeds = kmeanspp_locs(k_seed, rows, k, KMEANSPP_TRIALS, n_valid=rows_valid)
    locs = lloyd(rows, seeds, LLOYD_ITERS, rows_valid)
    return _init_from_locs(x, locs, count_weights=True, n_valid=n_valid)


#: Initialization schemes by name: (key, x (N, D), k, n_valid=None) -> Init.
INITS: dict[str, Callable[[jax.Array, jnp.ndarray, int], Init]] = {
    "seed": init_seed,
    "kmeans++": init_kmeanspp,
    "kmeans": init_kmeans,
}

"""Initial values of the globals, drawn in batches so that many restarts are one computation.

Each scheme returns a structure-free `Init` (weights, locs, spread per column) that the model
spec turns into its parameters (`Mixture.params_from_init`).
`seed` is the tutorial's scheme: uniform weights, spread sqrt(var / 2) (so the shared scale is
the tutorial's sqrt(var / 2)), locs at K distinct data points chosen uniformly. `kmeans++`
places the locs by D^2 sampling and sets the spread from the residuals to the nearest loc.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..model import Init
from ..model.components import scaled_sq_distances

__all__ = ["INITS", "distinct_indices", "init_kmeanspp", "init_seed"]


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


def _spread(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.sqrt(jnp.var(x, axis=0, ddof=1) / 2.0)


def init_seed(key: jax.Array, x: jnp.ndarray, k: int) -> Init:
    """The tutorial's initialization for one restart. x: (N, D) -> Init with locs (K, D)."""
    idx = distinct_indices(key, x.shape[0], k)
    return Init(_uniform_weights(k, x.dtype), x[idx], _spread(x))


def init_kmeanspp(key: jax.Array, x: jnp.ndarray, k: int) -> Init:
    """k-means++ seeding of the locs for one restart. x: (N, D) -> Init with locs (K, D)."""
    n, d = x.shape
    keys = jax.random.split(key, k)
    first = x[jax.random.randint(keys[0], (), 0, n)]
    locs = jnp.zeros((k, d), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, axis=-1)

    def body(i, carry):
        locs, d2 = carry
        # D^2 sampling; if every point already sits on a loc, fall back to uniform.
        logits = jnp.where(d2.sum() > 0, jnp.log(d2), jnp.zeros_like(d2))
        new = x[jax.random.categorical(keys[i], logits)]
        return locs.at[i].set(new), jnp.minimum(d2, jnp.sum((x - new) ** 2, axis=-1))

    locs, _ = jax.lax.fori_loop(1, k, body, (locs, d2))
    nearest = jnp.argmin(scaled_sq_distances(x, locs, jnp.ones_like(locs)), axis=1)
    resid = jnp.sqrt(jnp.mean((x - locs[nearest]) ** 2, axis=0))
    fallback = _spread(x)
    return Init(
        _uniform_weights(k, x.dtype), locs, jnp.where(resid > 1e-3 * fallback, resid, fallback)
    )


#: Initialization schemes by name: (key, x (N, D), k) -> Init.
INITS: dict[str, Callable[[jax.Array, jnp.ndarray, int], Init]] = {
    "seed": init_seed,
    "kmeans++": init_kmeanspp,
}

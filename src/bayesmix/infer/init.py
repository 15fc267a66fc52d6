"""Initial values of the globals, drawn in batches so that many restarts are one computation.

`seed` is the tutorial's scheme: uniform weights, scale sqrt(var / 2), locs at K distinct data
points chosen uniformly. `kmeans++` places the locs by D^2 sampling and sets the scale from
the mean squared distance to the nearest loc.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..model import Params

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


def init_seed(key: jax.Array, x: jnp.ndarray, k: int) -> Params:
    """The tutorial's initialization for one restart. x: (N, D) -> Params with locs (K, D)."""
    idx = distinct_indices(key, x.shape[0], k)
    scale = jnp.sqrt(jnp.mean(jnp.var(x, axis=0, ddof=1)) / 2.0)
    return Params(_uniform_weights(k, x.dtype), x[idx], scale)


def init_kmeanspp(key: jax.Array, x: jnp.ndarray, k: int) -> Params:
    """k-means++ seeding of the locs for one restart. x: (N, D) -> Params with locs (K, D)."""
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

    locs, d2 = jax.lax.fori_loop(1, k, body, (locs, d2))
    spread = jnp.sqrt(jnp.mean(jnp.var(x, axis=0, ddof=1)) / 2.0)
    scale = jnp.sqrt(jnp.mean(d2) / d)
    scale = jnp.where(scale > 1e-3 * spread, scale, spread)
    return Params(_uniform_weights(k, x.dtype), locs, scale)


#: Initialization schemes by name: (key, x (N, D), k) -> Params.
INITS: dict[str, Callable[[jax.Array, jnp.ndarray, int], Params]] = {
    "seed": init_seed,
    "kmeans++": init_kmeanspp,
}

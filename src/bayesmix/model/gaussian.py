"""Gaussian components with one shared spherical scale (the seed's model)."""

from __future__ import annotations

import math

import jax.numpy as jnp

from .params import Params

__all__ = ["component_log_prob", "sq_distances"]

_LOG_2PI = math.log(2.0 * math.pi)


def sq_distances(x: jnp.ndarray, locs: jnp.ndarray) -> jnp.ndarray:
    """Squared Euclidean distances, (N, D) x (K, D) -> (N, K).

    For D <= 2 the differences are formed directly (exact for far-away points and tiny
    scales); for larger D one matrix product, ||x - c||^2 - 2 (x - c).(m - c) + ||m - c||^2,
    centred on the mean loc c to limit cancellation.
    """
    if x.shape[-1] <= 2:
        return jnp.sum((x[:, None, :] - locs[None, :, :]) ** 2, axis=-1)
    c = locs.mean(axis=0)
    xc, mc = x - c, locs - c
    d2 = (xc**2).sum(-1)[:, None] - 2.0 * xc @ mc.T + (mc**2).sum(-1)[None, :]
    return jnp.maximum(d2, 0.0)


def component_log_prob(params: Params, x: jnp.ndarray) -> jnp.ndarray:
    """log Normal(x_n; locs_k, scale^2 I) for every point and component: (N, D) -> (N, K)."""
    d = x.shape[-1]
    log_scale = jnp.log(params.scale)
    return -0.5 * sq_distances(x, params.locs) / params.scale**2 - d * (log_scale + 0.5 * _LOG_2PI)

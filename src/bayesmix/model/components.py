"""Component densities: log p(x_n | component k) for every point and component, (N, K).

Two steps: the squared Mahalanobis distance of each point to each component with the log
square-root determinant of its covariance (by covariance structure), then the family's density
of that distance (Normal or Student-t).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import gammaln

from .params import Params

__all__ = ["component_log_prob", "covariance_cholesky", "mahalanobis", "scaled_sq_distances"]

_LOG_2PI = math.log(2.0 * math.pi)


def scaled_sq_distances(x: jnp.ndarray, locs: jnp.ndarray, inv_var: jnp.ndarray) -> jnp.ndarray:
    """sum_d (x_nd - locs_kd)^2 inv_var_kd: (N, D), (K, D), (K, D) -> (N, K).

    For D <= 2 the differences are formed directly (exact for far-away points and tiny scales);
    for larger D by matrix products centred on the mean loc (x - c)^2 iv - 2 (x - c)(m - c) iv
    + (m - c)^2 iv, which turns the work into two matmuls.
    """
    if x.shape[-1] <= 2:  # a sum over the columns written out: XLA's CPU reduction over a
        # trailing axis of length 1 or 2 ran 10x slower than these elementwise terms
        return sum(
            (x[:, j, None] - locs[None, :, j]) ** 2 * inv_var[None, :, j]
            for j in range(x.shape[-1])
        )
    c = locs.mean(axis=0)
    xc, mc = x - c, locs - c
    d2 = (xc**2) @ inv_var.T - 2.0 * xc @ (mc * inv_var).T + jnp.sum(mc**2 * inv_var, -1)[None, :]
    return jnp.maximum(d2, 0.0)


def mahalanobis(params: Params, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(squared Mahalanobis distances (N, K), log sqrt det of each covariance (K,))."""
    k, d = params.locs.shape
    s = jnp.asarray(params.scale)
    if params.corr_chol is None:
        inv_var = jnp.broadcast_to((1.0 / s**2).reshape(s.shape + (1,) * (2 - s.ndim)), (k, d))
        if s.ndim == 2:  # diag
            half_logdet = jnp.sum(jnp.log(s), axis=-1)
        else:  # shared / spherical
            half_logdet = jnp.broadcast_to(d * jnp.log(s), (k,))
        return scaled_sq_distances(x, params.locs, inv_var), half_logdet
    chol = s[..., :, None] * params.corr_chol  # Cholesky factor of the covariance
    diff = x[None, :, :] - params.locs[:, None, :]  # (K, N, D)
    if chol.ndim == 2:  # tied
        z = solve_triangular(chol, diff.reshape(-1, d).T, lower=True).T.reshape(k, -1, d)
        half_logdet = jnp.broadcast_to(jnp.sum(jnp.log(jnp.diagonal(chol))), (k,))
    else:  # full
        z = jnp.swapaxes(solve_triangular(chol, jnp.swapaxes(diff, 1, 2), lower=True), 1, 2)
        half_logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return jnp.sum(z**2, axis=-1).T, half_logdet


def component_log_prob(params: Params, x: jnp.ndarray) -> jnp.ndarray:
    """log p(x_n | z_n = k, globals): (N, D) -> (N, K)."""
    d = x.shape[-1]
    d2, half_logdet = mahalanobis(params, x)
    if params.df is None:
        return -0.5 * d2 - half_logdet - 0.5 * d * _LOG_2PI
    nu = params.df
    norm = gammaln(0.5 * (nu + d)) - gammaln(0.5 * nu) - 0.5 * d * jnp.log(nu * math.pi)
    return norm - half_logdet - 0.5 * (nu + d) * jnp.log1p(d2 / nu)


def covariance_cholesky(params: Params) -> jnp.ndarray:
    """Lower Cholesky factor of every component's covariance (the scale matrix for
    Student-t): (K, D, D)."""
    k, d = params.locs.shape
    s = jnp.asarray(params.scale)
    if params.corr_chol is None:
        diag = jnp.broadcast_to(s.reshape(s.shape + (1,) * (2 - s.ndim)), (k, d))
        return diag[..., :, None] * jnp.eye(d, dtype=diag.dtype)
    return jnp.broadcast_to(s[..., :, None] * params.corr_chol, (k, d, d))

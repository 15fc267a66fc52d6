"""Component densities: log p(x_n | component k) for every point and component, (N, K).

Two steps: the squared Mahalanobis distance of each point to each component with the log
square-root determinant of its covariance (by covariance structure), then the family's density
of that distance (Normal or Student-t).

Full and tied covariances whiten with the inverse of their Cholesky factor, `tril_inverse`,
written out here rather than by LAPACK's triangular solve: jaxlib 0.10's CPU LAPACK kernels
split a large batch over the intra-op thread pool and block until it is done, so two such
calls running at once took every thread of a 2-core machine and waited forever (`bayesmix fit
--covariance full` hung in Stephens' relabeling, whose program solved for two batches of draws
side by side; tests/test_components.py). The product is also 2.6-21x faster (RESULTS.md).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from .params import Params

__all__ = [
    "component_log_prob",
    "covariance_cholesky",
    "mahalanobis",
    "scaled_sq_distances",
    "tril_inverse",
]

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
    white = tril_inverse(chol)  # (D, D) tied, (K, D, D) full
    diff = x[None, :, :] - params.locs[:, None, :]  # (K, N, D)
    if chol.ndim == 2:  # tied
        z = diff @ white.T
        half_logdet = jnp.broadcast_to(jnp.sum(jnp.log(jnp.diagonal(chol))), (k,))
    else:  # full
        z = jnp.einsum("kde,kne->knd", white, diff)
        half_logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return jnp.sum(z**2, axis=-1).T, half_logdet


@jax.custom_jvp
def tril_inverse(chol: jnp.ndarray) -> jnp.ndarray:
    """The inverse W of lower-triangular matrices L (..., D, D), by forward substitution:
    row i of W is (e_i - L_i W) / L_ii while W's rows i.. are still zero. A loop of D small
    products (no LAPACK call: see the module's note), compiled once whatever D is; its
    derivative dW = -W dL W is products only (so Newton's Hessians stay cheap to compile)."""
    d = chol.shape[-1]
    eye = jnp.eye(d, dtype=chol.dtype)

    def row(i, w):
        li = jax.lax.dynamic_index_in_dim(chol, i, axis=-2, keepdims=False)  # (..., D)
        lii = jax.lax.dynamic_index_in_dim(li, i, axis=-1)  # (..., 1)
        new = (eye[i] - jnp.einsum("...j,...jd->...d", li, w)) / lii
        return jax.lax.dynamic_update_index_in_dim(w, new, i, axis=-2)

    return jax.lax.fori_loop(0, d, row, jnp.zeros_like(chol))


@tril_inverse.defjvp
def _tril_inverse_jvp(primals, tangents):
    (chol,), (dchol,) = primals, tangents
    white = tril_inverse(chol)
    return white, -white @ jnp.tril(dchol) @ white  # only the lower triangle is read


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

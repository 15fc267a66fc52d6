"""Drawing from the model: globals from the priors, data from the globals.

The generative model behind `bayesmix.enumerate.log_joint`, for tempered SMC (whose particles
start at prior draws) and for simulation-based calibration.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .model import Mixture, Params, Priors, covariance_cholesky

__all__ = ["sample_data", "sample_prior"]


def sample_prior(
    key: jax.Array, model: Mixture, priors: Priors, d: int, shape: tuple[int, ...] = ()
) -> Params:
    """Globals drawn from the priors (`bayesmix.model.priors`): Params whose fields have the
    leading axes `shape`, e.g. weights shape + (K,), locs shape + (K, D)."""
    import numpyro.distributions as dist  # lazy: only tracing needs it (bayesmix._jit)

    k = model.k
    kw, kl, ks, kc, kd = jax.random.split(key, 5)
    weights = dist.Dirichlet(jnp.full((k,), priors.weights_concentration)).sample(kw, shape)
    dtype = jnp.result_type(float)  # JAX's default float: float32 unless float64 is on
    locs_loc = jnp.broadcast_to(jnp.asarray(priors.locs_loc, dtype), (d,))
    locs_scale = jnp.broadcast_to(jnp.asarray(priors.locs_scale, dtype), (d,))
    locs = locs_loc + locs_scale * jax.random.normal(kl, shape + (k, d), locs_loc.dtype)
    scale_shape = {"shared": (), "spherical": (k,), "diag": (k, d), "full": (k, d), "tied": (d,)}
    per_column = model.covariance in ("diag", "full", "tied")
    scale_loc = jnp.broadcast_to(jnp.asarray(priors.scale_loc, locs.dtype), (d,))
    scale_loc = scale_loc if per_column else jnp.mean(scale_loc)
    z = jax.random.normal(ks, shape + scale_shape[model.covariance], locs.dtype)
    scale = jnp.exp(scale_loc + priors.scale_scale * z)
    corr_chol = None
    if model.covariance in ("full", "tied"):
        batch = shape + ((k,) if model.covariance == "full" else ())
        if d == 1:
            corr_chol = jnp.ones(batch + (1, 1), locs.dtype)
        else:
            corr_chol = dist.LKJCholesky(d, priors.lkj_concentration).sample(kc, batch)
    df = None
    if model.family == "student-t":
        if model.df is None:
            df = dist.Gamma(priors.df_shape, priors.df_rate).sample(kd, shape)
        else:
            df = jnp.full(shape, model.df, locs.dtype)
    return Params(weights, locs, scale, corr_chol, df)


def sample_data(key: jax.Array, params: Params, n: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """n points from the mixture with globals `params` (one draw, no leading axes).

    Returns (x (n, D), z (n,) int32: each point's component)."""
    kz, ke, kg = jax.random.split(key, 3)
    k, d = params.locs.shape
    z = jax.random.categorical(kz, jnp.log(params.weights), shape=(n,)).astype(jnp.int32)
    chol = covariance_cholesky(params)[z]  # (n, D, D)
    eps = jax.random.normal(ke, (n, d), params.locs.dtype)
    if params.df is not None:  # Student-t: a normal scaled by sqrt(df / chi2(df))
        g = jax.random.gamma(kg, 0.5 * params.df, (n,), params.locs.dtype) * 2.0
        eps = eps * jnp.sqrt(params.df / g)[:, None]
    return params.locs[z] + jnp.einsum("nij,nj->ni", chol, eps), z

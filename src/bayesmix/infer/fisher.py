"""The log joint with its gradient by Fisher's identity: one pass over the data.

The gradient of log p(x | globals) equals the gradient of EM's expected complete-data log
joint Q(globals'; globals) at globals' = globals (Fisher's identity; tests/test_em.py checks it
for every model). The E-step (`estep.stats`: matrix products over the rows, reduced at once to
K x D-sized statistics) gives the value and Q in closed form, so value and gradient cost one
pass of the E-step instead of autodiff's forward and backward passes through the (N, K)
log-sum-exp: 2.5-3x faster for N = 10,000, D = 2, K = 3 (value_and_grad, which NUTS evaluates
at every leapfrog step), and memory bounded by the E-step's blocks.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ..model import Mixture, Params, Priors, log_prior
from .estep import block_rows, data_rows, moment_kind, row_mean, stats
from .mstep import expected_log_joint

__all__ = ["log_joint", "log_joint_and_stats"]


def log_joint_and_stats(
    model: Mixture, params: Params, x: jnp.ndarray, priors: Priors, n_valid=None
) -> tuple[jnp.ndarray, tuple]:
    """(log p(globals, x), (the E-step's Stats, their centre)) of the first n_valid rows of x
    (N, D) (all for None; the others pad x), in one pass, without a gradient."""
    moment = moment_kind(model.covariance)
    c = row_mean(x, n_valid)  # any fixed centre: moments about the mean keep sums accurate
    block = block_rows(model.k, x.shape[-1], moment)
    st = stats(params, x, data_rows(x, n_valid), c, moment=moment, block=block)
    return st.loglik + log_prior(params, priors), (st, c)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def log_joint(
    model: Mixture, params: Params, x: jnp.ndarray, priors: Priors, n_valid=None
) -> jnp.ndarray:
    """log p(globals, x) of the first n_valid rows of x (all for None), as
    `enumerate.log_joint`, differentiable in params only (its gradient by Fisher's identity;
    x and priors get zero cotangents)."""
    return log_joint_and_stats(model, params, x, priors, n_valid)[0]


def _forward(model, params, x, priors, n_valid=None):
    value, (st, c) = log_joint_and_stats(model, params, x, priors, n_valid)
    return value, (params, st, c, x, priors)


def _backward(model, residuals, g):
    params, st, c, x, priors = residuals
    grad = jax.grad(lambda p: expected_log_joint(model, p, st, c, priors))(params)
    zeros = jax.tree.map(jnp.zeros_like, (x, priors))
    return (jax.tree.map(lambda v: g * v, grad), *zeros, None)


log_joint.defvjp(_forward, _backward)

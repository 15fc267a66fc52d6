"""Data-free units of the unconstrained globals, in which NUTS, L-BFGS and the mean-field fit
move: each coordinate scaled by the data's column sd (the locs) or by the log density's
curvature (an estimate of its posterior sd), so that their step sizes, starting points and
stopping rules do not depend on the units the data were measured in."""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp

from ..model import Params
from .estep import row_var

__all__ = ["CURVATURE_MAX_P", "inverse_curvature", "unit_scales"]

#: Up to this many parameters the curvature is computed (P gradient passes); beyond, units^2.
CURVATURE_MAX_P = 1000


def unit_scales(u: Params, x: jnp.ndarray, n_valid=None) -> jnp.ndarray:
    """The units (P,) per coordinate of the flat unconstrained position: each column's sd of
    the data x (N, D) (its first n_valid rows; all for None) for the locs, 1 for the rest (logs
    and logits carry no unit). Stan's warm-up pulls the metric toward 1e-3 in the units it
    samples in: in the data's units, data of sd 1e-6 left the locs' metric 1e10 times their
    posterior variance (every draw at tree depth 10, the chains unmoving) and data of sd 1e-3
    cost 13x the leapfrogs of sd 1."""
    sd = jnp.sqrt(row_var(x, n_valid))
    sd = jnp.where(sd > 0, sd, 1.0).astype(u.locs.dtype)
    units = jax.tree.map(jnp.ones_like, u)._replace(locs=jnp.broadcast_to(sd, u.locs.shape))
    return jax.flatten_util.ravel_pytree(units)[0]


def inverse_curvature(value_and_grad, flat, units):
    """(log p, its gradient (P,), 1 / |d^2 log p / du_i^2| (P,)) at the flat position `flat`,
    the curvature by forward differences of the gradient (P passes more), bounded to 1e-8..1e8
    units^2 (flat or wild directions) in the given `units` (P,) (`unit_scales`): units^2
    above CURVATURE_MAX_P parameters."""
    if flat.size > CURVATURE_MAX_P:
        return (*value_and_grad(flat), units**2)
    h = 1e-5 * (units + jnp.abs(flat))
    # One pass at a time (the work memory of one gradient; the gradients kept are (P + 1, P),
    # at most 8 MB); the last pass is at the position itself, so the program holds one copy of
    # the gradient, not two (the seed's cold NUTS run ~0.2 s faster).
    values, grads = jax.lax.map(
        lambda i: value_and_grad(jnp.where(jnp.arange(flat.size) == i, flat + h, flat)),
        jnp.arange(flat.size + 1),
    )
    grad = grads[-1]
    curvature = (jnp.diagonal(grads[:-1]) - grad) / h
    inverse = 1 / jnp.clip(jnp.abs(curvature) * units**2, 1e-8, 1e8)
    return values[-1], grad, jnp.where(jnp.isfinite(inverse), inverse, 1.0) * units**2

"""The globals of a mixture and their map to an unconstrained space.

`Params` holds constrained values; `to_unconstrained` / `from_unconstrained` use NumPyro's
bijections (stick-breaking for the simplex, exp for the scale), as Pyro's AutoDelta does.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from ..errors import SpecError

__all__ = ["Params", "check_k", "to_unconstrained", "from_unconstrained", "log_abs_det_jacobian"]

_SIMPLEX = biject_to(constraints.simplex)
_POSITIVE = biject_to(constraints.positive)


class Params(NamedTuple):
    """Mixture globals. weights: (K,) on the simplex; locs: (K, D); scale: () > 0."""

    weights: jnp.ndarray
    locs: jnp.ndarray
    scale: jnp.ndarray


def to_unconstrained(params: Params) -> Params:
    """Constrained -> unconstrained; weights (K,) -> (K - 1,)."""
    return Params(_SIMPLEX.inv(params.weights), params.locs, _POSITIVE.inv(params.scale))


def from_unconstrained(u: Params) -> Params:
    """Unconstrained -> constrained (inverse of `to_unconstrained`)."""
    return Params(_SIMPLEX(u.weights), u.locs, _POSITIVE(u.scale))


def log_abs_det_jacobian(u: Params) -> jnp.ndarray:
    """log |d from_unconstrained(u) / du|, the change of variables term NUTS needs."""
    w = _SIMPLEX(u.weights)
    s = _POSITIVE(u.scale)
    return _SIMPLEX.log_abs_det_jacobian(u.weights, w) + _POSITIVE.log_abs_det_jacobian(u.scale, s)


def check_k(k: object, n: int) -> int:
    """Return k as an int in 1..n or raise SpecError saying what to do."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise SpecError(f"the number of components K must be a whole number, got {k!r}")
    if k < 1:
        raise SpecError(f"the number of components K must be at least 1, got {k}")
    if k > n:
        raise SpecError(f"K = {k} components but only {n} data points; choose K <= {n} or add data")
    return int(k)

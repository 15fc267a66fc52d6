"""The globals of a mixture: one container for every covariance structure and family.

Which structure the arrays describe follows from their shapes (and is fixed by the `Mixture`
spec that made them):

=============  ===============  ==================  =========================================
covariance     scale            corr_chol           covariance of component k
=============  ===============  ==================  =========================================
shared         ()               None                scale^2 I   (the seed: one scale for all)
spherical      (K,)             None                scale_k^2 I
diag           (K, D)           None                diag(scale_k^2)
full           (K, D)           (K, D, D)           diag(scale_k) C_k C_k^T diag(scale_k)
tied           (D,)             (D, D)              diag(scale) C C^T diag(scale)
=============  ===============  ==================  =========================================

`corr_chol` is the Cholesky factor of a correlation matrix; `df` (shape ()) is the Student-t
degrees of freedom and is None for Gaussian components.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .._jit import serializable

__all__ = ["Params", "off_the_boundary"]


@serializable
class Params(NamedTuple):
    """Mixture globals. weights: (K,) on the simplex; locs: (K, D); see the module table."""

    weights: jnp.ndarray
    locs: jnp.ndarray
    scale: jnp.ndarray
    corr_chol: jnp.ndarray | None = None
    df: jnp.ndarray | None = None


def off_the_boundary(params: Params, n: int, concentration: float) -> Params:
    """params whose weights (..., K) of exactly 0, the components EM's sparse Dirichlet step
    emptied, are raised to an empty component's posterior mean weight a / (n + K a) (n rows,
    the Dirichlet(a) prior) and renormalized: a start inside the simplex, where the samplers'
    coordinates (log-ratios of the weights) are finite. Other weights are left as they are."""
    w = np.asarray(params.weights, dtype=np.float64)
    if not np.any(w == 0):
        return params
    k = w.shape[-1]
    w = np.where(w == 0, concentration / (n + k * concentration), w)
    return params._replace(weights=w / w.sum(axis=-1, keepdims=True))

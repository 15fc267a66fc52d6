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

from .._jit import serializable

__all__ = ["Params"]


@serializable
class Params(NamedTuple):
    """Mixture globals. weights: (K,) on the simplex; locs: (K, D); see the module table."""

    weights: jnp.ndarray
    locs: jnp.ndarray
    scale: jnp.ndarray
    corr_chol: jnp.ndarray | None = None
    df: jnp.ndarray | None = None

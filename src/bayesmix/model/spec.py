"""The model spec: K, the covariance structure and the component family.

A `Mixture` is static (hashable, part of what is compiled); the numbers live in `Params` and
`Priors`. It knows which fields are free, their bijections to an unconstrained space
(NumPyro's: stick-breaking for the simplex, exp for scales, the LKJ Cholesky map for
correlations) and how to turn a generic initialization into parameters of its structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import SpecError
from .params import Params

__all__ = ["COVARIANCES", "FAMILIES", "Init", "Mixture", "bijection", "check_k"]

COVARIANCES = ("shared", "spherical", "diag", "full", "tied")
FAMILIES = ("normal", "student-t")
#: Initial degrees of freedom when they are learned.
DF_INIT = 10.0


@cache
def bijection(field: str):
    """NumPyro's bijection from the unconstrained space onto the support of a Params field."""
    from numpyro.distributions import constraints  # lazy: only tracing needs it (bayesmix._jit)
    from numpyro.distributions.transforms import biject_to

    support = {
        "weights": constraints.simplex,
        "locs": constraints.real,
        "scale": constraints.positive,
        "corr_chol": constraints.corr_cholesky,
        "df": constraints.positive,
    }
    return biject_to(support[field])


class Init(NamedTuple):
    """A structure-free initialization: weights (K,), locs (K, D), spread (D,) > 0."""

    weights: jnp.ndarray
    locs: jnp.ndarray
    spread: jnp.ndarray


@dataclass(frozen=True)
class Mixture:
    """K components with a covariance structure and a family.

    covariance: "shared" (one spherical scale for all components: the seed's model),
    "spherical", "diag", "full" or "tied" (see `bayesmix.model.params`).
    family: "normal" or "student-t"; for Student-t, `df` fixes the degrees of freedom, or
    None learns them (one value shared by the components).
    """

    k: int
    covariance: str = "shared"
    family: str = "normal"
    df: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise SpecError(
                f"the number of components K must be a whole number >= 1, got {self.k!r}"
            )
        if self.covariance not in COVARIANCES:
            raise SpecError(f"unknown covariance {self.covariance!r}; choose one of {COVARIANCES}")
        if self.family not in FAMILIES:
            raise SpecError(f"unknown family {self.family!r}; choose one of {FAMILIES}")
        if self.df is not None:
            if self.family != "student-t":
                raise SpecError("df applies to family='student-t' only")
            if not (isinstance(self.df, int | float) and math.isfinite(self.df) and self.df > 0):
                raise SpecError(
                    f"df must be a finite number > 0 (or None to learn it), got {self.df!r}"
                )
        object.__setattr__(self, "k", int(self.k))

    @property
    def free_fields(self) -> tuple[str, ...]:
        """Fields that are fitted (and sampled), in Params order."""
        fields = ["weights", "locs", "scale"]
        if self.covariance in ("full", "tied"):
            fields.append("corr_chol")
        if self.family == "student-t" and self.df is None:
            fields.append("df")
        return tuple(fields)

    @property
    def component_fields(self) -> tuple[str, ...]:
        """Fields with a leading component axis (permuted together when relabeling)."""
        per_k = ["weights", "locs"]
        if self.covariance in ("spherical", "diag", "full"):
            per_k.append("scale")
        if self.covariance == "full":
            per_k.append("corr_chol")
        return tuple(per_k)

    def num_free_parameters(self, d: int) -> int:
        """Free real numbers of the model (for BIC / AIC): weights K-1, locs K D, and the
        covariance and df."""
        k = self.k
        cov = {
            "shared": 1,
            "spherical": k,
            "diag": k * d,
            "full": k * d * (d + 1) // 2,
            "tied": d * (d + 1) // 2,
        }[self.covariance]
        return (k - 1) + k * d + cov + (1 if "df" in self.free_fields else 0)

    def params_from_init(self, init: Init) -> Params:
        """Turn a structure-free initialization into this model's Params."""
        k, d = init.locs.shape
        spread = init.spread
        dtype = jnp.asarray(init.locs).dtype  # a NumPy float64 init: JAX's default float
        scale = {
            "shared": jnp.sqrt(jnp.mean(spread**2)),
            "spherical": jnp.full((k,), jnp.sqrt(jnp.mean(spread**2)), dtype),
            "diag": jnp.broadcast_to(spread, (k, d)),
            "full": jnp.broadcast_to(spread, (k, d)),
            "tied": spread,
        }[self.covariance]
        corr = {
            "full": jnp.broadcast_to(jnp.eye(d, dtype=dtype), (k, d, d)),
            "tied": jnp.eye(d, dtype=dtype),
        }
        df = None
        if self.family == "student-t":
            df = jnp.asarray(DF_INIT if self.df is None else self.df, dtype)
        return Params(init.weights, init.locs, scale, corr.get(self.covariance), df)

    def to_unconstrained(self, params: Params) -> Params:
        """Constrained -> unconstrained; fixed or absent fields become None."""
        return Params(
            **{
                f: (bijection(f).inv(getattr(params, f)) if f in self.free_fields else None)
                for f in Params._fields
            }
        )

    def unconstrained_like(self, d: int) -> Params:
        """The shapes and dtypes (jax.ShapeDtypeStruct) of `to_unconstrained`'s result for D
        columns, without NumPyro (which a warm run never imports): the simplex's
        stick-breaking map drops one weight, the correlation Cholesky factor (D, D) has
        D (D - 1) / 2 free values, the other fields keep their shapes."""
        k = self.k
        like = jax.eval_shape(
            lambda: self.params_from_init(Init(jnp.ones(k) / k, jnp.zeros((k, d)), jnp.ones(d)))
        )

        def free(f: str, v: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
            shape = {"weights": (k - 1,), "corr_chol": v.shape[:-2] + (d * (d - 1) // 2,)}
            return jax.ShapeDtypeStruct(shape.get(f, v.shape), v.dtype)

        return Params(**{f: free(f, getattr(like, f)) for f in self.free_fields})

    def from_unconstrained(self, u: Params) -> Params:
        """Unconstrained -> constrained (inverse of `to_unconstrained`); a fixed df is filled in."""
        values = {f: bijection(f)(getattr(u, f)) for f in self.free_fields}
        if self.family == "student-t" and self.df is not None:
            values["df"] = jnp.asarray(self.df, u.locs.dtype)
        return Params(**values)

    def log_abs_det_jacobian(self, u: Params) -> jnp.ndarray:
        """log |d from_unconstrained(u) / du|, summed over every free field."""
        total = jnp.zeros((), u.locs.dtype)
        for f in self.free_fields:
            if f == "locs":
                continue
            x = getattr(u, f)
            total += jnp.sum(bijection(f).log_abs_det_jacobian(x, bijection(f)(x)))
        return total

    def describe(self) -> dict:
        """JSON-ready description."""
        return {"k": self.k, "covariance": self.covariance, "family": self.family, "df": self.df}


def check_k(k: object, n: int) -> int:
    """Return k as an int in 1..n or raise SpecError saying what to do."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise SpecError(f"the number of components K must be a whole number, got {k!r}")
    if k < 1:
        raise SpecError(f"the number of components K must be at least 1, got {k}")
    if k > n:
        raise SpecError(f"K = {k} components but only {n} data points; choose K <= {n} or add data")
    return int(k)

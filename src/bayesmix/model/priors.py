"""Priors of the mixture's globals and their log density.

Defaults are the seed tutorial's: weights ~ Dirichlet(0.5), scales ~ LogNormal(0, 2), every
loc coordinate ~ Normal(0, 10). Correlations (full / tied) ~ LKJ(lkj_concentration); Student-t
degrees of freedom (when learned) ~ Gamma(df_shape, df_rate) (Juárez & Steel's Gamma(2, 0.1)).

`locs_loc`, `locs_scale` and `scale_loc` may be arrays of shape (D,) (one value per column);
`Priors.from_data` sets them from the data's scale.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .._jit import serializable
from ..data import column_moments
from ..errors import SpecError
from .params import Params

__all__ = ["Priors", "check_priors", "log_prior"]

_POSITIVE = (
    "weights_concentration",
    "scale_scale",
    "locs_scale",
    "lkj_concentration",
    "df_shape",
    "df_rate",
)
_PER_COLUMN = ("locs_loc", "locs_scale", "scale_loc")


@serializable
class Priors(NamedTuple):
    """Hyper-parameters (a pytree, so changing them does not recompile).

    weights ~ Dirichlet(weights_concentration); locs[k, d] ~ Normal(locs_loc[d], locs_scale[d]);
    every scale ~ LogNormal(scale_loc, scale_scale) (for a per-column scale, scale_loc[d]; for
    one scale per component or one shared scale, the mean of scale_loc over columns);
    corr_chol ~ LKJCholesky(lkj_concentration); df ~ Gamma(df_shape, df_rate).
    """

    weights_concentration: float = 0.5
    scale_loc: float | np.ndarray = 0.0
    scale_scale: float = 2.0
    locs_loc: float | np.ndarray = 0.0
    locs_scale: float | np.ndarray = 10.0
    lkj_concentration: float = 1.0
    df_shape: float = 2.0
    df_rate: float = 0.1

    @classmethod
    def from_data(cls, x: np.ndarray, **overrides) -> Priors:
        """Weakly informative priors on the data's scale. x: (N, D).

        The rule: locs ~ Normal(column mean, 3 x column sd); scales ~ LogNormal(log(column sd / 2),
        1.5), i.e. a component's scale is a priori around half the data's spread, within a factor
        ~20 either way (95%); weights, correlations and df as the defaults.
        """
        return cls.from_moments(*column_moments(np.asarray(x)), **overrides)

    @classmethod
    def from_moments(cls, mean: np.ndarray, sd: np.ndarray, **overrides) -> Priors:
        """`from_data`'s rule from the columns' means and standard deviations (D,), for data
        seen only in chunks."""
        sd = np.where(sd > 0, sd, 1.0)
        base = cls(scale_loc=np.log(sd / 2), scale_scale=1.5, locs_loc=mean, locs_scale=3 * sd)
        return base._replace(**overrides)

    def to_dict(self) -> dict:
        """JSON-ready values."""
        return {k: (np.asarray(v).tolist()) for k, v in self._asdict().items()}


def check_priors(priors: Priors, d: int | None = None) -> Priors:
    """Return `priors` as float arrays, or raise SpecError naming the bad hyper-parameter."""
    if not isinstance(priors, Priors):
        raise SpecError(
            f"priors must be a bm.Priors or 'auto' (Priors.from_data's rule), got {priors!r}"
        )
    values = {}
    for name, value in priors._asdict().items():
        try:
            v = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise SpecError(f"prior {name} must be a number, got {value!r}") from None
        allowed = ((), (d,)) if name in _PER_COLUMN and d is not None else ((),)
        if name in _PER_COLUMN and d is None:
            allowed = ((), v.shape) if v.ndim == 1 else ((),)
        if v.shape not in allowed:
            raise SpecError(
                f"prior {name} must be a number"
                + (f" or {d} numbers (one per column)" if name in _PER_COLUMN else "")
                + f", got shape {v.shape}"
            )
        if not np.all(np.isfinite(v)):
            raise SpecError(f"prior {name} must be finite, got {value!r}")
        if name in _POSITIVE and np.any(v <= 0):
            raise SpecError(f"prior {name} must be > 0, got {value!r}")
        values[name] = v if v.ndim else float(v)
    return Priors(**values)


def log_prior(params: Params, priors: Priors) -> jnp.ndarray:
    """log p(globals) in the constrained space, for whatever fields `params` holds."""
    import numpyro.distributions as dist  # lazy: only tracing needs it (bayesmix._jit)

    k = params.weights.shape[-1]
    lp = dist.Dirichlet(jnp.full((k,), priors.weights_concentration)).log_prob(params.weights)
    lp += dist.Normal(priors.locs_loc, priors.locs_scale).log_prob(params.locs).sum()
    scale_loc = jnp.asarray(priors.scale_loc)
    if jnp.ndim(params.scale) != 2 and params.corr_chol is None:  # one per component or shared
        scale_loc = jnp.mean(scale_loc)
    lp += dist.LogNormal(scale_loc, priors.scale_scale).log_prob(params.scale).sum()
    if params.corr_chol is not None and params.corr_chol.shape[-1] > 1:  # D = 1: C = [[1]]
        d = params.corr_chol.shape[-1]
        lp += dist.LKJCholesky(d, priors.lkj_concentration).log_prob(params.corr_chol).sum()
    if params.df is not None:
        lp += dist.Gamma(priors.df_shape, priors.df_rate).log_prob(params.df)
    return lp

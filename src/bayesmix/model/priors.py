"""Priors of the mixture's globals and their log density.

Defaults are the seed tutorial's: weights ~ Dirichlet(0.5), one shared scale ~ LogNormal(0, 2),
every loc coordinate ~ Normal(0, 10).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpyro.distributions as dist

from ..errors import SpecError
from .params import Params

__all__ = ["Priors", "check_priors", "log_prior"]


class Priors(NamedTuple):
    """Hyper-parameters (a pytree of floats, so changing them does not recompile).

    weights ~ Dirichlet(weights_concentration * ones(K));
    scale ~ LogNormal(scale_loc, scale_scale);  locs[k, d] ~ Normal(locs_loc, locs_scale).
    """

    weights_concentration: float = 0.5
    scale_loc: float = 0.0
    scale_scale: float = 2.0
    locs_loc: float = 0.0
    locs_scale: float = 10.0


def check_priors(priors: Priors) -> Priors:
    """Return `priors` as plain floats, or raise SpecError naming the bad hyper-parameter."""
    values = {}
    for name, value in priors._asdict().items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise SpecError(f"prior {name} must be a number, got {value!r}") from None
        if not math.isfinite(v):
            raise SpecError(f"prior {name} must be finite, got {v}")
        positive = name in ("weights_concentration", "scale_scale", "locs_scale")
        if positive and v <= 0:
            raise SpecError(f"prior {name} must be > 0, got {v}")
        values[name] = v
    return Priors(**values)


def log_prior(params: Params, priors: Priors) -> jnp.ndarray:
    """log p(weights) + log p(scale) + log p(locs), densities in the constrained space."""
    k = params.weights.shape[-1]
    lp = dist.Dirichlet(jnp.full((k,), priors.weights_concentration)).log_prob(params.weights)
    lp += dist.LogNormal(priors.scale_loc, priors.scale_scale).log_prob(params.scale)
    lp += dist.Normal(priors.locs_loc, priors.locs_scale).log_prob(params.locs).sum()
    return lp

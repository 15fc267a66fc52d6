"""What every fitter and sampler checks first: the data, the model, the priors, the counts."""

from __future__ import annotations

import numpy as np

from ..data import as_data
from ..errors import SpecError
from ..model import Mixture, Priors, check_k, check_priors
from .init import INITS

__all__ = ["check_init", "problem", "whole"]


def problem(
    data: object, k: object, covariance: str, family: str, df: float | None, priors: Priors
) -> tuple[np.ndarray, Mixture, Priors]:
    """(validated data x (N, D), the model spec, checked priors), or a clear error."""
    x = as_data(data)
    model = Mixture(check_k(k, x.shape[0]), covariance, family, df)
    return x, model, check_priors(priors, x.shape[1])


def whole(name: str, value: object, low: int = 1) -> int:
    """value as an int >= low, or a SpecError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise SpecError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def check_init(init: str) -> str:
    """init if it names an initialization scheme, else a SpecError listing them."""
    if init not in INITS:
        raise SpecError(f"unknown init {init!r}; choose one of {sorted(INITS)}")
    return init

"""What every fitter and sampler checks first: the data, the model, the priors, the counts."""

from __future__ import annotations

import numpy as np

from ..data import as_data, column_moments, column_names, fit_frame
from ..errors import PriorWarning, SpecError, warn
from ..model import Mixture, Priors, check_k, check_priors
from .init import INITS

__all__ = [
    "MAX_SEED",
    "check_init",
    "check_seed",
    "data_priors",
    "problem",
    "warn_if_priors_miss",
    "whole",
]

#: Seeds are 32-bit: JAX keys a float32 session's PRNG by the seed's low 32 bits only.
MAX_SEED = 2**32 - 1


def problem(
    data: object, k: object, covariance: str, family: str, df: float | None, priors: Priors | str
) -> tuple[np.ndarray, Mixture, Priors, tuple[str, ...] | None]:
    """(validated data x (N, D), the model spec, checked priors ("auto": `Priors.from_data`),
    a data frame's column names), or a clear error. A data frame's unnamed and index columns
    are left out (`fit_frame`)."""
    data = fit_frame(data)
    x = as_data(data)
    model = Mixture(check_k(k, x.shape[0]), covariance, family, df)
    return x, model, data_priors(priors, *column_moments(x)), column_names(data)


def data_priors(priors: Priors | str, mean: np.ndarray, sd: np.ndarray) -> Priors:
    """`priors` checked for data of these column means and sds (D,): "auto" stands for
    `Priors.from_data`'s rule; a PriorWarning where they cannot cover the data."""
    if isinstance(priors, str):
        if priors != "auto":
            raise SpecError(f"priors must be a bm.Priors or 'auto', got {priors!r}")
        priors = Priors.from_moments(mean, sd)
    priors = check_priors(priors, len(mean))
    warn_if_priors_miss(mean, sd, priors)
    return priors


def warn_if_priors_miss(mean: np.ndarray, sd: np.ndarray, priors: Priors) -> None:
    """PriorWarning where the priors cannot cover a column of the data (mean, sd: (D,)): the
    span mean +- sd reaches beyond 5 prior sds of the locs' prior mean, or sd (a bound on
    every component's scale) lies below the scale prior's range (4 prior sds under its median
    on the log scale). There the priors, not the data, decide the fit: the tutorial's
    Normal(0, 10) locs prior pins the locs of data near 1e6 at ~0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        loc_z = (np.abs(mean - priors.locs_loc) + sd) / priors.locs_scale
        scale_z = (priors.scale_loc - np.log(sd)) / priors.scale_scale
    bad = np.flatnonzero((loc_z > 5) | (scale_z > 4))
    if bad.size:
        j = int(bad[0])
        at = lambda v: float(np.broadcast_to(v, mean.shape)[j])  # noqa: E731
        warn(
            f"column {j} of the data (mean {mean[j]:.3g}, sd {sd[j]:.3g}) lies far outside the "
            f"priors (locs ~ Normal({at(priors.locs_loc):.3g}, {at(priors.locs_scale):.3g}), "
            f"scale ~ LogNormal({at(priors.scale_loc):.3g}, {at(priors.scale_scale):.3g})): "
            "they, not the data, will decide the fit. Use priors='auto' (bm.Priors.from_data(x)) "
            "or priors that cover the data",
            PriorWarning,
        )


def whole(name: str, value: object, low: int = 1) -> int:
    """value as an int >= low, or a SpecError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise SpecError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def check_seed(seed: object) -> int:
    """seed as an int in [0, MAX_SEED], or a SpecError."""
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int | np.integer)
        or not 0 <= seed <= MAX_SEED
    ):
        raise SpecError(f"seed must be a whole number from 0 to 2**32 - 1, got {seed!r}")
    return int(seed)


def check_init(init: str) -> str:
    """init if it names an initialization scheme, else a SpecError listing them."""
    if init not in INITS:
        raise SpecError(f"unknown init {init!r}; choose one of {sorted(INITS)}")
    return init

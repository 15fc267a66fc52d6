"""Which MAP fitter runs: EM for large data, gradient steps for small data.

`method="auto"` picks EM (`fit_em`) from `EM_MIN_ROWS` rows on: each EM iteration is one pass
over the data with closed-form updates, and it converges in tens of passes where Adam needs
hundreds of steps. Below that, the gradient fitter (`fit_map`: the tutorial's Adam, whose
loss and gradient-norm curves the workflow plots) is as fast and is what the tutorial does.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..result import MAPResult
from .em import fit_em
from .map import fit_map

__all__ = ["EM_MIN_ROWS", "METHODS", "fit_by_method", "resolve_method"]

METHODS = ("auto", "em", "adam", "lbfgs")
#: From this many rows on, method="auto" fits by EM.
EM_MIN_ROWS = 10_000


def resolve_method(method: str, n_rows: int) -> str:
    """The fitter "auto" stands for at n_rows rows ("em", "adam" or "lbfgs" otherwise as given)."""
    if method not in METHODS:
        raise SpecError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if method == "auto":
        return "em" if n_rows >= EM_MIN_ROWS else "adam"
    return method


def fit_by_method(
    x: np.ndarray,
    k: int,
    *,
    method: str = "auto",
    steps: int,
    gradient_options: dict | None = None,
    progress: bool | None = None,
    **common,
) -> MAPResult:
    """The MAP of x (N, D) by `resolve_method(method, N)`.

    steps : EM iterations at most, or gradient steps; gradient_options : further `fit_map`
    arguments (e.g. learning_rate), unused by EM; progress : EM's progress display (as
    `fit_em`'s; the gradient fitters have none); common : arguments both fitters take
    (covariance, family, df, priors, n_init, init, seed).
    """
    chosen = resolve_method(method, np.shape(x)[0])
    if chosen == "em":
        return fit_em(x, k, max_iter=steps, progress=progress, **common)
    return fit_map(x, k, steps=steps, optimizer=chosen, **(gradient_options or {}), **common)

"""Chains started from distinct MAP restarts: multimodal posteriors made visible.

Every chain of collapsed NUTS starts at the optimum of its own MAP restart (its own seed, hence
its own set of initializations). Chains that reach different modes then disagree, and the
diagnostics say so (R-hat and each chain's mean) instead of averaging them silently; chains
that agree were not merely started in the same place.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from ..data import as_data, fit_frame
from ..errors import SpecError
from ..model import Params, Priors
from ..result import MAPResult, Posterior
from .map import fit_map
from .nuts import sample_nuts
from .problem import whole

__all__ = ["map_restarts", "sample_multistart", "starts_from_fits"]


def map_restarts(
    data: object,
    k: int,
    *,
    restarts: int = 4,
    n_init: int = 10,
    seed: int = 0,
    **fit_options,
) -> list[MAPResult]:
    """`restarts` independent MAP fits, restart r with seed `seed + r` (best of `n_init`
    initializations each); `fit_options` go to `fit_map` (covariance, family, df, priors,
    init, steps, ...). Returned in restart order."""
    if isinstance(restarts, bool) or not isinstance(restarts, int | np.integer) or restarts < 1:
        raise SpecError(f"restarts must be a whole number >= 1, got {restarts!r}")
    x = as_data(fit_frame(data))
    return [fit_map(x, k, n_init=n_init, seed=seed + r, **fit_options) for r in range(restarts)]


def starts_from_fits(fits: Sequence[MAPResult], chains: int) -> Params:
    """Params with a leading chain axis (chains, ...): chain c starts at fits[c % len(fits)]."""
    if isinstance(fits, MAPResult):
        fits = [fits]
    if not isinstance(fits, list | tuple) or not fits:
        fits = [fits]
    if not all(isinstance(f, MAPResult) for f in fits):
        got = ", ".join(type(f).__name__ for f in fits)
        raise SpecError(
            "chains started from MAP restarts need fitted MAP results, got "
            f"{got}: fit the model first (bm.fit_map or map_restarts) and pass those fits"
        )
    models = {f.model for f in fits}
    if len(models) > 1:
        raise SpecError(f"the MAP fits are of different models {sorted(map(str, models))}")
    picks = [fits[c % len(fits)].params for c in range(chains)]
    return jax.tree.map(lambda *v: np.stack([np.asarray(a) for a in v]), *picks)


def sample_multistart(
    data: object,
    k: int,
    *,
    fits: Sequence[MAPResult] | None = None,
    chains: int = 4,
    n_init: int = 10,
    map_steps: int = 200,
    covariance: str = "shared",
    family: str = "normal",
    df: float | None = None,
    priors: Priors | str = Priors(),  # noqa: B008 (an immutable NamedTuple)
    warmup: int = 1000,
    draws: int = 1000,
    target_accept: float = 0.95,
    dense_mass: bool = False,
    seed: int = 0,
) -> Posterior:
    """Collapsed NUTS with chain c started at the MAP of restart c.

    Parameters
    ----------
    data : (N, D) array-like
    k, covariance, family, df, priors : the model, as for `sample_nuts`
    fits : MAP fits to start from (chain c at fits[c % len(fits)]); by default `chains`
        restarts are fitted here (`map_restarts` with `n_init`, `map_steps` and `seed`)
    chains, warmup, draws, target_accept, dense_mass, seed : as for `sample_nuts`

    Returns
    -------
    Posterior as from `sample_nuts`; ``diagnostics["starts"]`` lists the negative log joint of
    each chain's start. When the chains settle in different modes, the diagnostics' warnings
    say so with each chain's mean.
    """
    x = as_data(fit_frame(data))
    whole("chains", chains)
    model = dict(covariance=covariance, family=family, df=df, priors=priors)
    if fits is None:
        fits = map_restarts(
            x, k, restarts=chains, n_init=n_init, steps=map_steps, seed=seed, **model
        )
    fits = [fits] if isinstance(fits, MAPResult) else fits
    if not isinstance(fits, list | tuple):
        fits = [fits]  # rejected with a clear message below
    starts = starts_from_fits(fits, chains)
    spec = fits[0].model
    if (spec.k, spec.covariance, spec.family, spec.df) != (k, covariance, family, df):
        raise SpecError(
            f"the MAP fits are of {spec.describe()} but the posterior asked for is of "
            f"k={k}, covariance={covariance!r}, family={family!r}, df={df!r}: fit the same model"
        )
    post = sample_nuts(
        data,  # (its column names, where it has them)
        k,
        **model,
        chains=chains,
        warmup=warmup,
        draws=draws,
        target_accept=target_accept,
        dense_mass=dense_mass,
        init_params=starts,
        seed=seed,
    )
    post.diagnostics["starts"] = [
        {"chain": c, "neg_log_joint": fits[c % len(fits)].neg_log_joint} for c in range(chains)
    ]
    return post

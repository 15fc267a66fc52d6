"""Choosing K: information criteria of MAP fits, and a ranked table over candidate K.

BIC = -2 log L + p log N;  AIC = -2 log L + 2 p;  ICL = BIC + 2 * (classification entropy
-sum_nk r_nk log r_nk), all at the MAP, lower is better; p counts the model's free parameters
(`Mixture.num_free_parameters`). These criteria are invariant to the labelling of components.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import numpy as np

from .data import as_data, fit_frame, model_data
from .errors import SpecError
from .model import check_k
from .predict import log_density, predict_proba
from .result import MAPResult, Posterior, as_fit, as_posterior

__all__ = ["CRITERIA", "criteria", "pointwise_log_likelihood", "posterior_criteria", "select_k"]

CRITERIA = ("bic", "aic", "icl")


def criteria(fit: MAPResult, data: object) -> dict[str, float]:
    """BIC, AIC and ICL of a MAP fit on `data` (N, D), with log L and p."""
    fit = as_fit(fit)
    x = model_data(data, fit.columns, fit.params.locs.shape[-1])
    n, d = x.shape
    p = fit.model.num_free_parameters(d)
    loglik = float(np.sum(log_density(fit, x)))
    r = predict_proba(fit, x)
    entropy = float(-np.sum(r * np.log(np.where(r > 0, r, 1.0))))
    bic = -2 * loglik + p * math.log(n)
    return {
        "log_likelihood": loglik,
        "n_parameters": p,
        "bic": bic,
        "aic": -2 * loglik + 2 * p,
        "icl": bic + 2 * entropy,
    }


def pointwise_log_likelihood(post: Posterior, data: object) -> np.ndarray:
    """log p(x_n | globals of each draw), assignments summed out: (chains, draws, N)."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    from .enumerate import log_weighted

    post = as_posterior(post)
    x = jnp.asarray(model_data(data, post.columns, post.params.locs.shape[-1]))
    per_draw = jax.jit(jax.vmap(jax.vmap(lambda p: logsumexp(log_weighted(p, x), axis=-1))))
    return np.asarray(per_draw(jax.tree.map(jnp.asarray, post.params)))


def posterior_criteria(post: Posterior, data: object) -> dict[str, float]:
    """PSIS-LOO (ArviZ's) and WAIC of a posterior on `data`: expected log pointwise predictive
    densities `elpd_loo`, `elpd_waic` (higher is better) with standard errors, `p_loo`, and
    `pareto_k_max` (above 0.7 the LOO estimate is unreliable)."""
    import warnings

    from .inference_data import from_dict, import_arviz

    az = import_arviz()
    post = as_posterior(post)
    ll = pointwise_log_likelihood(post, data)
    idata = from_dict({"posterior": {"scale": post.params.scale}, "log_likelihood": {"x": ll}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on high Pareto k; we report it instead
        loo = az.loo(idata, pointwise=True)
    # ArviZ 0.x names the fields elpd_loo and p_loo, ArviZ 1 elpd and p.
    elpd, p = (loo.elpd_loo, loo.p_loo) if hasattr(loo, "elpd_loo") else (loo.elpd, loo.p)
    elpd_waic, waic_se = _waic(ll)
    return {
        "elpd_loo": float(elpd),
        "elpd_loo_se": float(loo.se),
        "p_loo": float(p),
        "pareto_k_max": float(np.max(loo.pareto_k)),
        "elpd_waic": elpd_waic,
        "elpd_waic_se": waic_se,
    }


def _waic(ll: np.ndarray) -> tuple[float, float]:
    """(elpd_waic, its standard error) of pointwise log likelihoods ll (chains, draws, N), as
    ArviZ 0.x's `waic` (ArviZ 1 has none): per point, the log of the mean likelihood over the
    draws less their log likelihoods' variance (ddof 0); the standard error sqrt(N var) of the
    N terms."""
    from scipy.special import logsumexp

    flat = np.asarray(ll, dtype=float).reshape(-1, np.shape(ll)[-1])
    terms = logsumexp(flat, axis=0) - math.log(flat.shape[0]) - np.var(flat, axis=0)
    return float(np.sum(terms)), float(math.sqrt(terms.size * np.var(terms)))


def select_k(
    data: object,
    ks: Sequence[int],
    fit: Callable[[np.ndarray, int], MAPResult] | None = None,
    criterion: str = "bic",
) -> list[dict]:
    """Fit every K in `ks` with `fit(x, k)` and rank them by `criterion` (best first).

    fit: default MAP-EM with priors on the data's scale (`fit_em(x, k, priors="auto")`, as
    `bayesmix select` does). JAX's in-memory caches of compiled programs are cleared after
    each K (`jax.clear_caches`; the persistent cache on disk keeps them).

    Returns one dict per K: {"k", "bic", "aic", "icl", "log_likelihood", "n_parameters",
    "occupied" (components with at least one MAP-assigned row), "rank"}.
    """
    if criterion not in CRITERIA:
        raise SpecError(f"unknown criterion {criterion!r}; choose one of {CRITERIA}")
    x = as_data(fit_frame(data))
    ks = [check_k(k, x.shape[0]) for k in ks]  # every K checked before the first fit
    if not ks:
        raise SpecError("give at least one K to compare")
    if fit is None:
        from .infer.em import fit_em

        def fit(x, k):
            return fit_em(x, k, priors="auto")

    rows = []
    for k in ks:
        result = fit(x, k)
        row = {"k": int(k), **criteria(result, x)}
        row["occupied"] = int(len(np.unique(np.argmax(predict_proba(result, x), axis=1))))
        rows.append(row)
        # Every K compiles its own programs (~500 memory mappings and ~30 MB each, never used
        # again here): kept, a range of ~100 Ks exhausted the mappings (vm.max_map_count) and
        # LLVM crashed the process. They stay in the persistent cache, for a later fit.
        jax.clear_caches()
    rows.sort(key=lambda r: r[criterion])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows

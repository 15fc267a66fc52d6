"""Export to ArviZ's InferenceData, to continue in the ArviZ ecosystem (and save as NetCDF).

Groups: ``posterior`` (the globals, relabeled consistently by default, with named dimensions
chain, draw, component, dim), ``sample_stats`` (the sampler's per-draw statistics, renamed to
ArviZ's conventions: diverging, acceptance_rate, n_steps, energy), and, when the data are
given, ``observed_data`` and ``log_likelihood`` (log p(x_n | globals), the assignments summed
out, for az.loo). ``idata.to_netcdf(path)`` writes it to disk. With ArviZ 1 the result is an
xarray DataTree with the same groups (ArviZ 1's own format), with ArviZ 0.x an InferenceData.
"""

from __future__ import annotations

import json
import warnings
from types import ModuleType

import numpy as np

from .data import model_data
from .result import Posterior, as_posterior, relabeled_params

__all__ = ["from_dict", "import_arviz", "to_inference_data"]

_STATS = {
    "diverging": "diverging",
    "acceptance_rate": "acceptance_rate",
    "num_steps": "n_steps",
    "energy": "energy",
}
_SCALE_DIMS = {
    "shared": [],
    "spherical": ["component"],
    "diag": ["component", "dim"],
    "full": ["component", "dim"],
    "tied": ["dim"],
}


def import_arviz() -> ModuleType:
    """ArviZ, imported without its once-a-day notice of an upcoming refactor (a FutureWarning
    that would reach every bayesmix user, and fail a session run with -W error)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "\\s*ArviZ is undergoing", FutureWarning)
        import arviz

    return arviz


def from_dict(groups: dict[str, dict[str, np.ndarray]], **kwargs):
    """ArviZ's `from_dict` of {group: {name: (chains, draws, ...) array}} (keyword arguments
    as ArviZ's: dims, coords): an InferenceData with ArviZ 0.x, an xarray DataTree with ArviZ 1
    (whose `from_dict` takes the groups as one dict)."""
    az = import_arviz()
    if int(az.__version__.split(".")[0]) >= 1:
        return az.from_dict(groups, **kwargs)
    return az.from_dict(**groups, **kwargs)


def to_inference_data(post: Posterior, data: object = None, *, relabel: str | None = "auto"):
    """An `arviz.InferenceData` of the posterior.

    Parameters
    ----------
    post : from sample_nuts, sample_multistart or sample_smc
    data : (N, D) the data the posterior was fitted on; adds observed_data and log_likelihood
    relabel : "auto" (Stephens with data, else the ordering by the first loc coordinate),
        "stephens", "order" or None (the raw draws), as for the diagnostics

    Returns
    -------
    InferenceData (ArviZ 0.x) or DataTree (ArviZ 1); its posterior's attrs hold the model
    ("model", JSON) and the relabeling.
    """
    post = as_posterior(post)
    x = None if data is None else model_data(data, post.columns, post.params.locs.shape[-1])
    params, record = relabeled_params(post, x, relabel)
    model = post.model
    posterior = {"weights": params.weights, "locs": params.locs, "scale": params.scale}
    dims = {
        "weights": ["component"],
        "locs": ["component", "dim"],
        "scale": _SCALE_DIMS[model.covariance],
    }
    if params.corr_chol is not None:
        c = np.asarray(params.corr_chol)
        posterior["corr"] = np.einsum("...ij,...kj->...ik", c, c)
        dims["corr"] = (["component"] if model.covariance == "full" else []) + ["dim", "dim_"]
    if params.df is not None:
        posterior["df"] = params.df
        dims["df"] = []
    shape = (post.num_chains, post.num_draws)
    stats = {
        _STATS.get(k, k): np.asarray(v)
        for k, v in post.sampler.items()
        if np.shape(v) == shape and k in _STATS
    }
    groups = {"posterior": {k: np.asarray(v) for k, v in posterior.items()}}
    if stats:
        groups["sample_stats"] = stats
    if x is not None:
        from .select import pointwise_log_likelihood

        groups["observed_data"] = {"x": x}
        groups["log_likelihood"] = {"x": pointwise_log_likelihood(post, x)}
        dims["x"] = ["obs", "dim"]
    n_dims = {"component": np.arange(model.k), "dim": np.arange(post.params.locs.shape[-1])}
    n_dims["dim_"] = n_dims["dim"]
    idata = from_dict(groups, dims=dims, coords=n_dims)
    idata.posterior.attrs["model"] = json.dumps(model.describe())
    idata.posterior.attrs["relabeling"] = json.dumps(record)
    for key, value in post.sampler.items():  # per-run records (SMC's evidence, ...)
        if np.ndim(value) == 1:
            idata.posterior.attrs[key] = np.asarray(value).tolist()
    return idata

"""bayesmix: Bayesian mixture models whose discrete assignments are marginalized exactly.

>>> import bayesmix as bm
>>> fit = bm.fit_map(bm.SEED_DATA, k=2)                 # MAP, best of 100 initializations
>>> bm.predict(fit, [0.0, 5.9, 12.0])                   # classifier, temperature 0
>>> local = bm.fit_local(fit, bm.SEED_DATA)             # q(z_n) by guide-side enumeration
>>> post = bm.sample_nuts(bm.SEED_DATA, k=2)            # collapsed NUTS, 4 chains
"""

from ._jit import enable_compilation_cache as _enable_compilation_cache
from .data import SEED_DATA, as_data, read_csv
from .errors import (
    BayesmixError,
    DataError,
    DataWarning,
    FitError,
    FitWarning,
    PriorWarning,
    SpecError,
)
from .infer.em import FitInterrupted, fit_em
from .infer.map import fit_map
from .infer.nuts import sample_nuts
from .infer.vi import fit_local
from .io import SavedModel, load, save
from .model import Mixture, Params, Priors
from .predict import log_density, predict, predict_proba
from .relabel import random_permutation, relabel  # eager: `bm.relabel` is also the module's name
from .result import LocalPosterior, MAPResult, Posterior
from .select import criteria, select_k

__all__ = [
    "SEED_DATA",
    "SavedModel",
    "BayesianMixture",
    "BayesmixError",
    "DataError",
    "DataWarning",
    "FitError",
    "FitInterrupted",
    "FitWarning",
    "LocalPosterior",
    "MAPResult",
    "Mixture",
    "Params",
    "Posterior",
    "PriorWarning",
    "Priors",
    "SpecError",
    "as_data",
    "coclustering",
    "criteria",
    "fit_em",
    "fit_local",
    "fit_map",
    "fit_meanfield",
    "load",
    "log_density",
    "membership",
    "predict",
    "predict_proba",
    "predictive_density",
    "random_permutation",
    "read_csv",
    "relabel",
    "sample_multistart",
    "sample_nuts",
    "sample_smc",
    "save",
    "select_k",
    "to_inference_data",
]
__version__ = "0.1.0"


# Imported on first use: the scikit-learn estimator (scikit-learn is an optional extra) and the
# posterior tools (SMC imports BlackJAX, which a warm run of the rest never needs).
_LAZY = {
    "BayesianMixture": "estimator",
    "coclustering": "posterior",
    "fit_meanfield": "infer.meanfield",
    "membership": "posterior",
    "predictive_density": "posterior",
    "sample_multistart": "infer.multistart",
    "sample_smc": "infer.smc",
    "to_inference_data": "inference_data",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'bayesmix' has no attribute {name!r}")


# A second run of the same workflow loads compiled programs instead of compiling them again
# (BAYESMIX_CACHE_DIR, else ~/.cache/bayesmix/jax; a cache the user configured is kept).
_enable_compilation_cache()

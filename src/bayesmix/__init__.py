"""bayesmix: Bayesian mixture models whose discrete assignments are marginalized exactly.

>>> import bayesmix as bm
>>> fit = bm.fit_map(bm.SEED_DATA, k=2)                 # MAP, best of 100 initializations
>>> bm.predict(fit, [0.0, 5.9, 12.0])                   # classifier, temperature 0
>>> local = bm.fit_local(fit, bm.SEED_DATA)             # q(z_n) by guide-side enumeration
>>> post = bm.sample_nuts(bm.SEED_DATA, k=2)            # collapsed NUTS, 4 chains
"""

from ._jit import enable_compilation_cache as _enable_compilation_cache
from .data import SEED_DATA, as_data, read_csv
from .errors import BayesmixError, DataError, FitError, SpecError
from .infer.em import FitInterrupted, fit_em
from .infer.map import fit_map
from .infer.nuts import sample_nuts
from .infer.vi import fit_local
from .io import SavedModel, load, save
from .model import Mixture, Params, Priors
from .predict import log_density, predict, predict_proba
from .result import LocalPosterior, MAPResult, Posterior
from .select import criteria, select_k

__all__ = [
    "SEED_DATA",
    "SavedModel",
    "BayesianMixture",
    "BayesmixError",
    "DataError",
    "FitError",
    "FitInterrupted",
    "LocalPosterior",
    "MAPResult",
    "Mixture",
    "Params",
    "Posterior",
    "Priors",
    "SpecError",
    "as_data",
    "criteria",
    "fit_em",
    "fit_local",
    "fit_map",
    "load",
    "log_density",
    "predict",
    "predict_proba",
    "read_csv",
    "sample_nuts",
    "save",
    "select_k",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The scikit-learn estimator is imported on first use: scikit-learn is an optional extra.
    if name == "BayesianMixture":
        from .estimator import BayesianMixture

        return BayesianMixture
    raise AttributeError(f"module 'bayesmix' has no attribute {name!r}")


# A second run of the same workflow loads compiled programs instead of compiling them again
# (BAYESMIX_CACHE_DIR, else ~/.cache/bayesmix/jax; a cache the user configured is kept).
_enable_compilation_cache()

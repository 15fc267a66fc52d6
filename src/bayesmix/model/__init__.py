"""The mixture model: its spec, globals, priors and component densities."""

from .components import component_log_prob, covariance_cholesky, tril_inverse
from .params import Params, off_the_boundary
from .priors import Priors, check_priors, log_prior
from .spec import COVARIANCES, FAMILIES, Init, Mixture, check_k

__all__ = [
    "COVARIANCES",
    "FAMILIES",
    "Init",
    "Mixture",
    "Params",
    "Priors",
    "check_k",
    "check_priors",
    "component_log_prob",
    "covariance_cholesky",
    "log_prior",
    "off_the_boundary",
    "tril_inverse",
]

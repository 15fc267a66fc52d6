"""The mixture model: its globals, priors and component densities."""

from .gaussian import component_log_prob
from .params import Params, check_k, from_unconstrained, log_abs_det_jacobian, to_unconstrained
from .priors import Priors, check_priors, log_prior

__all__ = [
    "Params",
    "Priors",
    "check_k",
    "check_priors",
    "component_log_prob",
    "from_unconstrained",
    "log_abs_det_jacobian",
    "log_prior",
    "to_unconstrained",
]

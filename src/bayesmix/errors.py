"""One exception hierarchy: every error bayesmix raises on purpose derives from `BayesmixError`.

Messages name the offending value (file, row, column, option) and say what to do.
"""

from __future__ import annotations

__all__ = [
    "BayesmixError",
    "BayesmixWarning",
    "DataError",
    "DataWarning",
    "FitError",
    "FitWarning",
    "PriorWarning",
    "SpecError",
]


class BayesmixError(Exception):
    """Base class of bayesmix's own errors; the CLI prints these without a traceback."""


class DataError(BayesmixError, ValueError):
    """The data cannot be used: missing, empty, non-numeric, non-finite, too few rows, ..."""


class SpecError(BayesmixError, ValueError):
    """A model or inference option is invalid (K, priors, number of steps, ...)."""


class FitError(BayesmixError, RuntimeError):
    """Inference ran but produced an unusable result (non-finite loss, ...)."""


class BayesmixWarning(UserWarning):
    """Base class of bayesmix's own warnings; the CLI prints these as one line of text."""


class PriorWarning(BayesmixWarning):
    """The data lie far outside the priors, which then decide the fit instead of the data."""


class DataWarning(BayesmixWarning):
    """Part of the data was left out (e.g. a file's unnamed row-index column)."""


class FitWarning(BayesmixWarning):
    """The fit's settings do not suit the data (e.g. Adam's step size against its spread)."""

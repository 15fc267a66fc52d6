"""One exception hierarchy: every error bayesmix raises on purpose derives from `BayesmixError`.

Messages name the offending value (file, row, column, option) and say what to do.
"""

from __future__ import annotations

import os
import sys
import warnings

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


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning]) -> None:
    """Issue a warning attributed to the first caller outside bayesmix (the user's line, which
    warnings' filters and "shown once per location" then refer to, whatever the depth of the
    bayesmix call it came from)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    # A worker thread's stack can end inside bayesmix: the line that warned, then.
    warnings.warn(message, category, stacklevel=level if frame is not None else 2)

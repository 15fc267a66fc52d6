"""Serving a saved model: its compiled classifier warmed up, its description as JSON.

The CLI's `predict`, the HTTP service and the model page classify with `predict.classify`,
the one compiled program behind `bm.predict` / `bm.predict_proba` (labels and probabilities in
one pass), so the four agree exactly.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..io import SavedModel
from ..predict import batch_rows, classify
from ..result import MAPResult

__all__ = ["TEMPERATURES", "describe", "jsonable", "warm_up"]


#: The temperatures served: 0 (the MAP component) and 1 (a draw from the exact posterior).
TEMPERATURES = (0, 1)


def warm_up(fit: MAPResult, max_rows: int) -> int:
    """Compile the classifier for every batch size up to `max_rows` (batches are padded to
    `bayesmix.predict.batch_rows`: powers of two from 8); returns the number of sizes
    compiled."""
    d = int(np.shape(fit.params.locs)[-1])
    sizes = 0
    n = 8
    while True:
        classify(fit, np.zeros((n, d)), 1)
        sizes += 1
        if n >= max_rows:
            return sizes
        n = batch_rows(n + 1)


def describe(model: SavedModel) -> dict:
    """JSON-ready metadata: K, D, columns, the model spec, priors, MAP parameters and fit
    statistics, how it was fitted, and the posterior's size and diagnostics (or None)."""
    fit, post = model.fit, model.posterior
    scalars = {
        f.name: getattr(fit, f.name)
        for f in dataclasses.fields(fit)
        if isinstance(getattr(fit, f.name), bool | int | float | str)
    }
    out = {
        "k": model.k,
        "d": model.d,
        "columns": list(model.columns),
        "model": jsonable(getattr(fit, "model", None)),
        "fit_method": model.meta["fit_method"],
        "priors": jsonable(fit.priors),
        "params": {k: v for k, v in jsonable(fit.params).items() if v is not None},
        "map": jsonable(scalars),
        "posterior": None,
        "diagnostics": None,
        "settings": model.meta.get("settings"),
        "format_version": model.meta["format_version"],
        "bayesmix_version": model.meta["bayesmix_version"],
        "created": model.meta["created"],
    }
    if post is not None:
        locs = np.shape(post.params.locs)
        out["posterior"] = {"chains": int(locs[0]), "draws": int(locs[1])}
        out["diagnostics"] = jsonable(post.diagnostics)
    return out


def jsonable(obj: object) -> object:
    """Arrays, NumPy scalars, NamedTuples and dataclasses -> plain JSON values (non-finite
    floats become None, as JSON has no NaN)."""
    if isinstance(obj, np.ndarray | np.generic):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return {name: jsonable(v) for name, v in obj._asdict().items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(key): jsonable(v) for key, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj

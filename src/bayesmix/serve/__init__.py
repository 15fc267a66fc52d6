"""Serving a saved model: batch prediction on tables and an HTTP service.

- `tables`: CSV / Parquet in and out (Parquet needs pyarrow);
- `batch`: labels and membership probabilities of a batch (`bm.predict` / `bm.predict_proba`)
  and the JSON description of a saved model;
- `app`: the FastAPI service (`create_app(model)`; needs the `serve` extra:
  pip install 'bayesmix[serve]'), with `schemas` (request / response), `npy` (NPY request
  bodies, read safely) and `page` (the model page at `/`).

Importing this package does not import FastAPI; `create_app` does.
"""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

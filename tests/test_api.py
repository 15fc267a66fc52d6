"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import subprocess
import sys

import bayesmix as bm

# Imported only where they are needed (tracing a program, plots, InferenceData export).
LAZY = ("numpyro", "blackjax", "optax", "arviz", "matplotlib")


def test_public_names():
    assert sorted(bm.__all__) == sorted(
        [
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
    )
    assert all(hasattr(bm, name) for name in bm.__all__)


def test_errors_form_one_hierarchy():
    for cls in (bm.DataError, bm.SpecError, bm.FitError):
        assert issubclass(cls, bm.BayesmixError)


def test_import_is_light():
    # A warm run loads its programs from the export cache: it needs JAX, not these.
    code = f"import sys, bayesmix; print([m for m in {LAZY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"

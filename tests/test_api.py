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


def test_every_name_the_readme_uses_exists():
    """The README's examples call `bm.<name>`: each must be a public name."""
    import re
    import types
    from pathlib import Path

    import bayesmix.posterior
    import bayesmix.relabel  # noqa: F401 (a submodule's import must not shadow a function)

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    used = set(re.findall(r"\bbm\.([A-Za-z_]\w*)", readme))
    assert used and used <= set(bm.__all__)
    assert not [name for name in used if isinstance(getattr(bm, name), types.ModuleType)]

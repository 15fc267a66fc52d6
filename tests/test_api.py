"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

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
    )
    assert all(hasattr(bm, name) for name in bm.__all__)


def test_errors_form_one_hierarchy():
    for cls in (bm.DataError, bm.SpecError, bm.FitError):
        assert issubclass(cls, bm.BayesmixError)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70, 1.0, True, "0"])
def test_every_seed_is_checked_before_any_work(seed):
    """A seed outside [0, 2**32) is refused by name (JAX keys a float32 session by the low 32
    bits only, so a larger seed would repeat a smaller one's draws; 2**70 overflowed)."""
    x, fit = bm.SEED_DATA, _seed_fit()
    calls = [
        lambda: bm.fit_em(x, 2, seed=seed),
        lambda: bm.fit_map(x, 2, seed=seed),
        lambda: bm.sample_nuts(x, 2, seed=seed),
        lambda: bm.sample_smc(x, 2, seed=seed),
        lambda: bm.fit_meanfield(fit, x, seed=seed),
        lambda: bm.predict(fit, x, temperature=1, seed=seed),
    ]
    for call in calls:
        with pytest.raises(bm.SpecError, match="seed must be a whole number from 0 to 2..32 - 1"):
            call()


def test_priors_auto_means_from_data_in_every_fitter():
    """priors="auto" (fit_em's, the estimator's and the CLI's word for `Priors.from_data`) is
    taken by every fitter and sampler alike; another word or type is refused by name."""
    x = bm.SEED_DATA + 1000
    calls = {
        "fit_map": lambda p: bm.fit_map(x, 2, priors=p, n_init=2, steps=20).params,
        "sample_nuts": lambda p: bm.sample_nuts(x, 2, priors=p, chains=1, warmup=10, draws=5),
    }  # sample_smc and sample_multistart take theirs by the same `problem` (or fit_map)
    explicit = bm.Priors.from_data(x)
    for name, call in calls.items():
        a, b = call("auto"), call(explicit)
        if isinstance(a, bm.Posterior):
            a, b = a.params, b.params
        for u, v in zip(a, b, strict=True):
            if u is not None:
                np.testing.assert_array_equal(u, v, err_msg=name)
        for bad in ("data", {"locs_scale": 1.0}):
            with pytest.raises(bm.SpecError, match="priors must be a bm.Priors or 'auto'"):
                call(bad)


def _seed_fit():
    return bm.fit_map(bm.SEED_DATA, 2, n_init=1, steps=2)


FLOAT32_SESSION = """
import numpy as np, bayesmix as bm
rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(0, 1, (40, 2)), rng.normal(5, 1, (40, 2))])
fit = bm.fit_em(x, 2, priors="auto")
bm.fit_map(x, 2, priors="auto", n_init=2, steps=20); bm.fit_local(fit, x, steps=20)
bm.predict(fit, x, temperature=1); bm.criteria(fit, x); bm.select_k(x, [1, 2])
post = bm.sample_nuts(x, 2, priors="auto", chains=2, warmup=20, draws=20)
bm.membership(post, x); bm.predictive_density(post, x[:3]); bm.coclustering(post, x[:5])
bm.relabel(post, x); bm.random_permutation(post); bm.to_inference_data(post)
bm.sample_multistart(x, 2, priors="auto", chains=2, warmup=20, draws=20, map_steps=20)
bm.fit_meanfield(fit, x, steps=20)
import jax; from bayesmix.simulate import sample_prior  # sample_smc's first draws (11 s whole)
jax.jit(sample_prior, static_argnums=(1, 3, 4))(jax.random.key(0), fit.model, fit.priors, 2, (3,))
z = (rng.normal(size=(100_000, 10)) + 4 * (rng.random((100_000, 1)) < 0.4)).astype(np.float32)
fits = []
for offset in (16, 32):  # where the rows lie in memory (it once changed float32 sums' grouping)
    raw = np.zeros(z.nbytes + 128, np.uint8); at = -raw.ctypes.data % 64 + offset
    moved = raw[at : at + z.nbytes].view(np.float32).reshape(z.shape); moved[:] = z
    fits.append(bm.fit_em(moved, 4, covariance="diag"))
assert np.array_equal(fits[0].losses, fits[1].losses), [len(f.losses) for f in fits]
print(post.params.locs.dtype, fit.params.locs.dtype)
"""


def test_a_float32_session_runs_every_function_without_a_warning():
    """Without JAX's float64 (a user's default; the tests run in float64), the API computes in
    float32 and asks JAX for no float64 array (which JAX would truncate with a warning);
    fit_em's answer does not depend on where the data lies in memory."""
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", FLOAT32_SESSION],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["float32", "float32"]


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

"""The persistent caches: the second run of a workflow neither traces nor compiles again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bayesmix as bm
from bayesmix import _jit

SCRIPT = """
import json, sys, jax
jax.config.update("jax_enable_x64", True)
import bayesmix as bm
fit = bm.fit_map(bm.SEED_DATA, 2, n_init=5, steps=5)
# Imported to trace only (SciPy's linalg by NumPyro; JAX's LAPACK set-up would import it too).
tracing = [m for m in ("numpyro", "optax", "scipy.linalg") if m in sys.modules]
print(json.dumps([[fit.neg_log_joint, bm.predict_proba(fit, [1.0, 5.75]).tolist()], tracing]))
"""

# A program that calls LAPACK (the full covariance's Cholesky factor), loaded warm.
LAPACK_SCRIPT = """
import json, sys, jax, numpy as np
jax.config.update("jax_enable_x64", True)
from bayesmix.infer.em import fit_em
x = np.random.default_rng(0).normal(size=(60, 3)) + np.repeat([[0.0], [5.0]], 30, axis=0)
fit = fit_em(x, 2, covariance="full", max_iter=3, n_init=1)
tracing = [m for m in ("numpyro", "optax") if m in sys.modules]
print(json.dumps([[fit.neg_log_joint, fit.params.locs.tolist()], tracing]))
"""


def _run(cache, script=SCRIPT):
    """(results, tracing libraries imported, cache files -> mtime) of a script in a new process."""
    env = {**os.environ, "BAYESMIX_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    files = {p.relative_to(cache): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    return *json.loads(out.stdout), files


def test_second_run_reuses_both_caches(tmp_path):
    cache = tmp_path / "cache"
    first, traced, files = _run(cache)
    assert traced == ["numpyro", "optax", "scipy.linalg"]
    exported = {p for p in files if p.parts[0] == "exported"}
    assert len(exported) == 2  # the MAP program and the classifier
    assert len(files) > len(exported)  # compiled executables beside them
    second, traced, again = _run(cache)
    # Nothing new was exported or compiled, nothing rewritten; the results are identical; and
    # nothing was traced, so the libraries used only while tracing were never imported.
    assert again == files
    assert second == first
    assert traced == []


def test_a_program_that_calls_lapack_runs_from_the_caches(tmp_path):
    """A warm run skips JAX's LAPACK set-up for programs that call no LAPACK routine, not for
    those that do (the EM fit of a full covariance: a missing set-up fails the call). The warm
    EM fit traces nothing (its final gradient norm was traced every run: 0.4 s and NumPyro's
    import)."""
    first, traced, files = _run(tmp_path, LAPACK_SCRIPT)
    assert "numpyro" in traced
    assert any(b"lapack" in (tmp_path / p).read_bytes() for p in files if p.parts[0] == "exported")
    second, traced, again = _run(tmp_path, LAPACK_SCRIPT)
    assert traced == []
    assert again == files
    np.testing.assert_allclose(second[0], first[0], rtol=1e-13)
    np.testing.assert_allclose(second[1], first[1], rtol=1e-13)


def test_exported_programs_compute_what_jit_computes(monkeypatch):
    cached = bm.fit_map(bm.SEED_DATA, 2, n_init=7, steps=11)
    monkeypatch.setattr(_jit, "_EXPORT_DIR", None)
    plain = bm.fit_map(bm.SEED_DATA, 2, n_init=7, steps=11)
    # The same program, lowered once directly and once from its serialized form: XLA may fuse
    # the two differently, so the last bit of a float64 may differ (seen: 1 ulp).
    np.testing.assert_allclose(cached.losses, plain.losses, rtol=1e-14)
    np.testing.assert_allclose(cached.params.locs, plain.params.locs, rtol=1e-14)


def test_programs_take_float32_products_in_full_precision():
    """JAX's default lets a GPU take float32 matrix products in TF32 (a 10-bit mantissa: 3e-3
    errors in an H100's E-step statistics). Every bayesmix program, and the M-step, asks for
    full precision: checked in the lowered programs (a CPU has no TF32 to tell apart)."""
    import re

    import jax.numpy as jnp

    from bayesmix.infer.estep import Stats, estep
    from bayesmix.infer.mstep import update
    from bayesmix.model import Mixture, Params, Priors

    x = jnp.ones((64, 3), jnp.float32)
    params = Params(jnp.full(2, 0.5), jnp.zeros((2, 3)), jnp.ones((2, 3)))
    c = jnp.zeros(3)
    programs = [estep._large.lower(params, x, 64, c, 0, moment="diag", block=64)]
    st = Stats(*(jnp.ones(s) for s in ((), (), (2,), (2,), (2, 3), (2, 3, 3), ())))
    programs.append(update.lower(Mixture(2, "full"), Params(
        params.weights, params.locs, params.scale, jnp.eye(3)[None].repeat(2, 0)
    ), st, c, Priors()))  # fmt: skip
    for program in programs:
        dots = re.findall(r"stablehlo\.dot_general .*", program.as_text())
        assert dots and all("precision = [HIGHEST, HIGHEST]" in d for d in dots), dots


def test_the_caches_are_pruned_to_their_size_least_recently_used_first(tmp_path):
    """Over the limit, the files least recently used go first, down to 3/4 of it; files used
    within min_age_s are kept even then; and the check runs at most once per every_s."""
    now = 1_800_000_000.0
    ages = {"a": 50, "b": 40, "c": 30, "d": 20, "e": 10, "f": 0.1}  # hours since last use
    names = {k: f"jit_{k}-{'0' * 64}-cache" for k in "abdf"} | {k: f"_{k}-{'1' * 32}" for k in "ce"}
    (tmp_path / "exported").mkdir()
    for name, hours in ages.items():
        f = tmp_path / ("exported" if name in "ce" else "") / names[name]
        f.write_bytes(b"x" * 100)
        os.utime(f, (now - 3600 * hours, now - 3600 * hours))
    for other in (tmp_path / "notes.txt", tmp_path / "exported" / "mine"):  # not the caches'
        other.write_bytes(b"y" * 1000)
        os.utime(other, (0, 0))

    def left():
        return sorted(
            next(k for k, v in names.items() if v == p.name)
            for p in tmp_path.rglob("*")
            if p.name in names.values()
        )

    _jit.prune_cache(tmp_path, limit=1000, now=now)  # 600 bytes: within the limit
    assert left() == list("abcdef")
    (tmp_path / ".pruned").unlink()
    _jit.prune_cache(tmp_path, limit=400, now=now)  # down to 300: a, b, c go
    assert left() == list("def")
    _jit.prune_cache(tmp_path, limit=100, now=now + 3600)  # checked within the day: no change
    assert left() == list("def")
    os.utime(tmp_path / names["f"], (now + 86400 - 60, now + 86400 - 60))  # used a minute ago
    _jit.prune_cache(tmp_path, limit=100, now=now + 86400)  # a day on: f is spared
    assert left() == ["f"]
    assert (tmp_path / "notes.txt").exists() and (tmp_path / "exported" / "mine").exists()


def test_sizes_are_read_with_binary_units():
    assert _jit.parse_size("512M") == 512 * 2**20
    assert _jit.parse_size(" 1.5GiB") == 3 * 2**29
    assert _jit.parse_size("4g") == 4 * 2**30
    assert _jit.parse_size("1000000") == 1_000_000
    for bad in ("", "lots", "-1G", "nan", "1e30T"):
        with pytest.raises(ValueError, match="is not a size; e.g. 512M or 4G"):
            _jit.parse_size(bad)


def test_compile_options_this_xla_lacks_are_dropped(monkeypatch):
    # JAX 0.12's XLA has no `xla_cpu_use_fusion_emitters`: every cheap build failed to compile.
    options = {"xla_backend_optimization_level": 0, "xla_no_such_option": True}
    monkeypatch.setattr(_jit, "_FAST_COMPILE", options)
    _jit.fast_compile.cache_clear()
    try:
        assert _jit.fast_compile() == {"xla_backend_optimization_level": 0}
        program = _jit.sized_jit(lambda x: 2 * x)
        assert float(program(np.float64(3.0), work=1)) == 6.0  # the cheap build compiles
    finally:
        _jit.fast_compile.cache_clear()

"""The persistent compilation cache: the second run of a workflow loads, not compiles."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import jax
jax.config.update("jax_enable_x64", True)
import bayesmix as bm
bm.predict(bm.fit_map(bm.SEED_DATA, 2, n_init=5, steps=5), [1.0])
"""


def _run(cache):
    env = {**os.environ, "BAYESMIX_CACHE_DIR": str(cache), "JAX_LOG_COMPILES": "0"}
    subprocess.run([sys.executable, "-c", SCRIPT], env=env, check=True, capture_output=True)
    return {p.name: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}


def test_second_run_reuses_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = _run(cache)
    assert len(first) >= 2  # the MAP program and the classifier at least
    second = _run(cache)
    # Nothing new was compiled and written: every entry of the second run existed already.
    assert set(second) == set(first)

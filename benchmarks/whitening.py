"""Whitening for full covariances: LAPACK's batched triangular solve (what `mahalanobis` used)
against `model.tril_inverse` and a product (what it uses: jaxlib 0.10's batched LAPACK calls
deadlock side by side, see `model.components`). Squared Mahalanobis distances of N rows to K
components, float32 on the CPU: compile time and the best of 5 runs.

    .venv/bin/python benchmarks/whitening.py [--n 100000] [--k 3] [--d 2,4,10,20,50]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

os.environ["BAYESMIX_CACHE_DIR"] = tempfile.mkdtemp()  # compile times without the caches
from bayesmix.model import Params  # noqa: E402
from bayesmix.model.components import mahalanobis  # noqa: E402


def by_solve(chol, locs, x):
    diff = x[None] - locs[:, None]  # (K, N, D)
    z = jnp.swapaxes(solve_triangular(chol, jnp.swapaxes(diff, 1, 2), lower=True), 1, 2)
    return jnp.sum(z**2, -1)


def by_inverse(chol, locs, x):
    """`mahalanobis` itself, (K, N) as `by_solve`."""
    scale = jnp.sqrt(jnp.sum(chol**2, -1))  # the rows' norms: chol = diag(scale) corr_chol
    params = Params(jnp.ones(len(locs)) / len(locs), locs, scale, chol / scale[..., None])
    return mahalanobis(params, x)[0].T


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--d", default="2,4,10,20,50")
    args = ap.parse_args()
    print("| D | LAPACK solve: compile (s) / run (ms) | tril_inverse: compile (s) / run (ms) "
          "| run speed-up | largest relative difference |")  # fmt: skip
    print("|---|---|---|---|---|")
    for d in (int(v) for v in args.d.split(",")):
        rng = np.random.default_rng(0)
        a = rng.normal(size=(args.k, d, d))
        chol = np.linalg.cholesky(a @ np.swapaxes(a, 1, 2) + d * np.eye(d))
        chol, locs = jnp.asarray(chol, jnp.float32), jnp.asarray(rng.normal(size=(args.k, d)))
        x = jnp.asarray(rng.normal(size=(args.n, d)), jnp.float32)
        cells, outs = [], []
        for f in (by_solve, by_inverse):
            t = time.perf_counter()
            compiled = jax.jit(f).lower(chol, locs, x).compile()
            compile_s = time.perf_counter() - t
            outs.append(np.asarray(compiled(chol, locs, x)))
            runs = []
            for _ in range(5):
                t = time.perf_counter()
                compiled(chol, locs, x).block_until_ready()
                runs.append(time.perf_counter() - t)
            cells.append((compile_s, 1e3 * min(runs)))
        diff = np.max(np.abs(outs[1] - outs[0]) / outs[0])
        (c0, r0), (c1, r1) = cells
        print(f"| {d} | {c0:.2f} / {r0:.1f} | {c1:.2f} / {r1:.1f} | {r0 / r1:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()

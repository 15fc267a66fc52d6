"""One block of the diagonal Normal E-step on the CPU: `estep._block_stats` (rows by
columns, x (B, D)) against the same statistics from the data physically transposed, x (D, B),
with the moments as products over the block's last axis ("NT": XLA's CPU product with M = K
rows runs ~2x faster that way than (K, B) x (B, D)). Microseconds per block, the best of
five rounds; float32 as for large data. A lead for the E-step's layout on the CPU (see
RESULTS.md, "the dense mass matrix", and `estep_layout.py`, whose whole-array variants
disagree at D = 2).

    .venv/bin/python benchmarks/estep_block.py [--kd 3x2,2x10,8x10,2x1,16x10] [--block 32768]
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayesmix.infer.estep import _block_stats, _over_components
from bayesmix.model import Params


def best_us(f, *args, calls: int = 60) -> float:
    f = jax.jit(f)
    jax.block_until_ready(f(*args))
    rounds = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(calls):
            out = f(*args)
        jax.block_until_ready(out)
        rounds.append((time.perf_counter() - t) / calls)
    return 1e6 * min(rounds)


def columns_stats(p: Params, xt: jnp.ndarray, keep: jnp.ndarray, c: jnp.ndarray):
    """(loglik, n (K,), s (K, D), q (K, D)) of the rows of xt (D, B), as `_block_stats`."""
    d = xt.shape[0]
    xc = xt - c[:, None]
    var, mc = p.scale**2, p.locs - c
    if d <= 2:  # written out per column, as `estep._distances`
        d2 = sum((xc[j][None, :] - mc[:, j, None]) ** 2 / var[:, j, None] for j in range(d))
    else:
        d2 = jnp.einsum("kd,db->kb", 1 / var, xc * xc) - jnp.einsum("kd,db->kb", 2 * mc / var, xc)
        d2 = jnp.maximum(d2 + jnp.sum(mc**2 / var, -1)[:, None], 0.0)
    half_logdet = jnp.sum(jnp.log(var), -1) / 2
    lw = (
        jnp.log(p.weights)[:, None]
        - 0.5 * d2
        - (half_logdet + 0.5 * d * math.log(2 * math.pi))[:, None]
    )
    top = _over_components(jnp.maximum, lw)
    e = jnp.exp(lw - top)
    total = _over_components(jnp.add, e)
    r = e * jnp.where(keep, 1 / total, 0.0)
    loglik = jnp.sum(jnp.where(keep, top + jnp.log(total), 0.0))
    s = jnp.einsum("kb,db->kd", r, xc)
    return loglik, jnp.sum(r, 1), s, jnp.einsum("kb,db->kd", r, xc * xc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kd", default="3x2,2x10,8x10,2x1,16x10")
    ap.add_argument("--block", type=int, default=32768)
    args = ap.parse_args()
    b = args.block
    print(
        "| K | D | rows (B, D): `_block_stats` (us) | columns (D, B), NT products (us) | speed-up |"
    )
    print("|---|---|---|---|---|")
    for kd in args.kd.split(","):
        k, d = (int(v) for v in kd.split("x"))
        rng = np.random.default_rng(0)
        x = rng.normal(size=(b, d)).astype(np.float32)
        p = Params(
            jnp.full(k, 1 / k, jnp.float32),
            jnp.asarray(rng.normal(size=(k, d)), jnp.float32),
            jnp.full((k, d), 1.3, jnp.float32),
        )
        keep, c = jnp.ones(b, bool), jnp.zeros(d, jnp.float32)
        rows = best_us(lambda p, x: _block_stats(p, x, keep, c, "diag"), p, jnp.asarray(x))  # noqa: B023
        cols = best_us(lambda p, xt: columns_stats(p, xt, keep, c), p, jnp.asarray(x.T.copy()))  # noqa: B023
        ref = _block_stats(p, jnp.asarray(x), keep, c, "diag")
        new = columns_stats(p, jnp.asarray(x.T.copy()), keep, c)
        assert np.allclose(ref.loglik, new[0], rtol=1e-4) and np.allclose(ref.q, new[3], rtol=1e-3)
        print(f"| {k} | {d} | {rows:.0f} | {cols:.0f} | {rows / cols:.2f}x |", flush=True)


if __name__ == "__main__":
    main()

"""float32 E-step accuracy and speed (bayesmix traces its programs with full-precision matrix
products: on a GPU, JAX's default lets float32 products run in TF32, with a 10-bit mantissa).

The E-step's statistics of N rows (D = 10, K components, the `scale.py` data) in float32,
against the float64 statistics: relative error of the log likelihood and of the counts, first
and second moments, and the time of one E-step (median of 10). For comparison, the relative
error of the E-step's one large product, (N, 2D) features x (2D, K), at JAX's default precision
and at "highest".

    .venv/bin/python benchmarks/precision.py --n 1e6 --k 8
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from scale import _data  # noqa: E402  (beside this file)

from bayesmix.infer.estep import block_rows, estep  # noqa: E402
from bayesmix.model import Params  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e6)
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--k", type=int, default=8)
    a = ap.parse_args()
    n, d, k = int(a.n), a.d, a.k
    x = _data(n, d, k, "float64")
    rng = np.random.default_rng(2)
    params = Params(np.full(k, 1 / k), x[rng.choice(n, k, replace=False)], 0.5 + rng.random((k, d)))
    c = x.mean(0)
    block = block_rows(k, d)
    print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), N={n} D={d} K={k}")

    def run(xd, p):
        st = estep(p, xd, n, jnp.asarray(c), 0, moment="diag", block=block, work=n * k * 50)
        return jax.block_until_ready(st)

    ref = run(jnp.asarray(x), params)
    x32 = jnp.asarray(x, jnp.float32)
    p32 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
    st = run(x32, p32)
    times = []
    for _ in range(10):
        t = time.perf_counter()
        run(x32, p32)
        times.append(time.perf_counter() - t)
    err = {
        f: np.linalg.norm(np.asarray(getattr(st, f)) - np.asarray(getattr(ref, f)))
        / np.linalg.norm(np.asarray(getattr(ref, f)))
        for f in ("loglik", "n", "s", "q")
    }
    print(
        f"float32 E-step {1e3 * np.median(times):.2f} ms, relative error "
        + "  ".join(f"{f} {v:.1e}" for f, v in err.items())
    )
    xc = x[:100_000] - c
    feats = np.concatenate([xc * xc, xc], axis=1)
    w = rng.normal(size=(2 * d, k))
    exact = feats @ w
    for precision in ("default", "highest"):
        got = jax.jit(partial(jnp.matmul, precision=precision))(
            jnp.asarray(feats, jnp.float32), jnp.asarray(w, jnp.float32)
        )
        rel = np.linalg.norm(np.asarray(got) - exact) / np.linalg.norm(exact)
        print(f"features x weights at precision {precision!r}: relative error {rel:.1e}")


if __name__ == "__main__":
    main()

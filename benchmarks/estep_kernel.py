"""The GPU E-step kernel (`bayesmix.infer.estep_kernel`) against XLA's `estep.stats`: accuracy
of its float32 statistics against float64's, then the E-step alone (fastest of 7) for rows x
warps per program (`estep_kernel.launch`'s and others), with the machine's exp floor over the
same N x K elements.

    python3 benchmarks/estep_kernel.py --n 1e7 --d 10,1 --k 2,8,16
"""

from __future__ import annotations

import argparse
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from bayesmix.infer import estep_kernel  # noqa: E402
from bayesmix.infer.estep import block_rows, stats  # noqa: E402
from bayesmix.model import Params  # noqa: E402


def _fastest(fn, repeats: int = 7) -> float:
    jax.block_until_ready(fn())  # compile / warm
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def _problem(n: int, d: int, k: int, seed: int = 0):
    key = jax.random.key(seed)
    centres = 6 * jax.random.normal(key, (k, d))
    z = jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, k)
    x = (centres[z] + 3 + jax.random.normal(jax.random.fold_in(key, 2), (n, d))).astype(jnp.float32)
    scale = jax.random.uniform(jax.random.fold_in(key, 3), (k, d), jnp.float64, 0.7, 1.5)
    params = Params(jnp.full(k, 1 / k), centres.astype(jnp.float64) + 3.5, scale)
    c = jnp.mean(params.locs, axis=0)
    return x, params, c


def _xla(params, x, n_valid, c, first=0):
    estep_kernel.KERNEL = False
    try:
        k, d = params.locs.shape
        return stats(params, x, n_valid, c, first, moment="diag", block=block_rows(k, d))
    finally:
        estep_kernel.KERNEL = True


def accuracy(n: int, d: int, k: int) -> None:
    x, params, c = _problem(n, d, k, seed=1)
    first, n_valid = 37, n - 11
    ref = jax.jit(_xla)(params, x.astype(jnp.float64), n_valid, c, first)
    xla32 = jax.jit(_xla)(params, x, n_valid, c, first)
    got = estep_kernel.diag_stats(params, x, n_valid, c, first)
    row = [f"{n} x {d}, K = {k}"]
    for f in ("rows", "loglik", "n", "s", "q"):
        a = np.asarray(getattr(ref, f))
        err = [np.max(np.abs(np.asarray(getattr(v, f)) - a)) / np.max(np.abs(a))
               for v in (got, xla32)]  # fmt: skip
        row.append(f"{err[0]:.1e} ({err[1]:.1e})")
    print("| " + " | ".join(row) + " |", flush=True)


def speed(n: int, d: int, k: int, configs: list[str]) -> None:
    x, params, c = _problem(n, d, k)
    xla = jax.jit(lambda p, x, c: _xla(p, x, n, c))
    t_xla = _fastest(lambda: xla(params, x, c))
    ex = jax.jit(jnp.exp)
    zz = jax.random.normal(jax.random.key(0), (n, k), jnp.float32)
    floor = _fastest(lambda: ex(zz))
    times = {}
    for config in configs:
        r, w = estep_kernel.launch(k) if config == "auto" else map(int, config.split("x"))
        try:
            t = _fastest(lambda r=r, w=w: estep_kernel.diag_stats(params, x, n, c, rows=r, warps=w))
        except Exception as e:  # noqa: BLE001 - a configuration that does not compile
            print(f"  {r} rows x {w} warps: {type(e).__name__}: {str(e)[:200]}", flush=True)
            continue
        print(f"  {r} rows x {w} warps{' (auto)' if config == 'auto' else ''}: {1e3 * t:.3f} ms",
              flush=True)  # fmt: skip
        times[config] = (t, r, w)
    t, r, w = times.get("auto") or min(times.values())
    print(
        f"| {n:.0e} | {d} | {k} | {1e3 * t_xla:.3f} | {1e3 * t:.3f} ({r} rows x {w} warps) | "
        f"{1e3 * min(times.values())[0]:.3f} | {t_xla / t:.2f}x | {1e3 * floor:.3f} | "
        f"{floor / t:.2f} |",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1e7")
    ap.add_argument("--d", default="10,1")
    ap.add_argument("--k", default="2,8,16")
    ap.add_argument("--configs", default="auto,256x4,512x4,256x8,512x8",
                    help="rows x warps per program; auto: estep_kernel.launch")  # fmt: skip
    ap.add_argument("--skip-accuracy", action="store_true")
    a = ap.parse_args()
    ints = lambda s: [int(float(v)) for v in s.split(",")]  # noqa: E731
    print(f"{jax.default_backend()} ({jax.devices()[0].device_kind}), {time.strftime('%F %T')}")
    if not a.skip_accuracy:
        print("Relative error against float64 statistics: kernel (XLA float32)\n"
              "| problem | rows | loglik | n | s | q |\n|---|---|---|---|---|---|")  # fmt: skip
        for d, k in [(10, 2), (10, 3), (10, 8), (10, 16), (1, 2), (1, 16), (16, 5)]:
            accuracy(1_000_003, d, k)
    print("| N | D | K | XLA E-step (ms) | kernel (ms) | fastest tried (ms) | speed-up | "
          "exp floor (ms) | kernel throughput / floor |\n"
          "|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for n, d, k in itertools.product(ints(a.n), ints(a.d), ints(a.k)):
        speed(n, d, k, a.configs.split(","))


if __name__ == "__main__":
    main()

"""Time of one EM iteration, in one compiled program (`em._device_segment`: SEGMENT iterations
with no host round trip) against one round trip per iteration (the E-step program, then the
M-step program, then the objective read on the host: what chunked and Dask fits do), with the
machine's floor (a compiled exp over N x K float32 elements).

The data are drawn on the device (no host copy in the timings); each time is the fastest of 5.
`scale.py` times whole fits, whose validation and host-to-device copy vary from fit to fit by
more than tens of iterations cost at 1e7 x 10 on a GPU.

    .venv/bin/python benchmarks/em_loop.py --n 1e6 --d 1,10 --k 2,8,16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
# --written-out-k and --kernel change constants read at trace time, which the export cache's key
# (the source) does not see: such a run gets an export cache of its own.
if any(arg.startswith(("--written-out-k", "--kernel")) for arg in sys.argv):
    os.environ["BAYESMIX_CACHE_DIR"] = tempfile.mkdtemp(prefix="bayesmix-em-loop-")

from bayesmix.infer import em, estep_kernel  # noqa: E402
from bayesmix.infer import estep as estep_module  # noqa: E402
from bayesmix.infer.estep import RUNS, block_rows, estep  # noqa: E402
from bayesmix.infer.mstep import update  # noqa: E402
from bayesmix.model import Mixture, Params, Priors  # noqa: E402


def _fastest(fn, repeats: int = 5) -> float:
    fn()  # compile / warm
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(n: int, d: int, k: int) -> dict:
    key = jax.random.key(0)
    centres = 6 * jax.random.normal(key, (k, d))
    z = jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, k)
    x = (centres[z] + jax.random.normal(jax.random.fold_in(key, 2), (n, d))).astype(jnp.float32)
    del z
    model = Mixture(k, "diag")
    acc = jnp.float64
    params = Params(jnp.full(k, 1 / k, acc), centres.astype(acc) + 0.5, jnp.ones((k, d), acc))
    priors = Priors.from_data(np.asarray(x[:10000], np.float64))
    block, work = block_rows(k, d), n * d * k * RUNS
    prev = jnp.zeros((), acc)
    steps = em.SEGMENT
    never = (jnp.asarray(-1.0, acc), jnp.asarray(-1.0, acc))  # tolerances: run every step

    def fused():
        seg = em._device_segment(params, [(x, 0, n)], priors, prev, 1, 0, steps, never, n,
                                 em.GENERAL_NEWTON_STEPS, work=work, model=model, moment="diag",
                                 block=block)  # fmt: skip
        assert int(seg.count) == steps
        return seg

    def round_trips():
        p = params
        for _ in range(steps):
            c = em._centre(p, x.dtype)
            st = estep(p, x, n, c, 0, moment="diag", block=block, work=work)
            objective, p, _ = update(model, p, st, c, priors)
            float(objective)

    ex = jax.jit(jnp.exp)
    zz = jax.random.normal(key, (n, k), jnp.float32)
    floor = _fastest(lambda: ex(zz).block_until_ready())
    one = _fastest(lambda: jax.block_until_ready(fused())) / steps
    trips = _fastest(round_trips, 2) / steps
    return {"n": n, "d": d, "k": k, "fused_s": one, "round_trips_s": trips, "floor_s": floor}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1e6,1e7")
    ap.add_argument("--d", default="1,10")
    ap.add_argument("--k", default="2,8,16")
    ap.add_argument("--written-out-k", type=int, help="override estep.WRITTEN_OUT_K")
    ap.add_argument("--kernel", type=int, choices=(0, 1), help="the GPU E-step kernel off / on")
    a = ap.parse_args()
    if a.written_out_k is not None:
        estep_module.WRITTEN_OUT_K = a.written_out_k
    if a.kernel is not None:
        estep_kernel.KERNEL = bool(a.kernel)
    print(f"{jax.default_backend()} ({jax.devices()[0].device_kind}), {time.strftime('%F %T')}")
    print("| N | D | K | one program, per iteration | round trips, per iteration | ratio | exp "
          "floor | throughput / floor |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for n in [int(float(v)) for v in a.n.split(",")]:
        for d in [int(v) for v in a.d.split(",")]:
            for k in [int(v) for v in a.k.split(",")]:
                r = measure(n, d, k)
                print(
                    f"| {n:.0e} | {d} | {k} | {1e3 * r['fused_s']:.3f} ms | "
                    f"{1e3 * r['round_trips_s']:.3f} ms | "
                    f"{r['round_trips_s'] / r['fused_s']:.2f}x | {1e3 * r['floor_s']:.3f} ms | "
                    f"{r['floor_s'] / r['fused_s']:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

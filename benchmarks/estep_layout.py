"""Layouts of the E-step for diagonal Normal components, timed against `estep.stats` (the
statistics loglik, n, s, q of float32 data (N, D); each time the fastest of 7 calls; "relerr":
the largest difference from `estep.stats`'s, relative to its largest value).

  rows_*   (B, K) intermediates (components last), reductions over K by jnp.max / jnp.sum
  kb_elem  (K, B) as `estep._block_stats`, distances written out per column
  cols_*   data transposed to (D, N), (K, N) intermediates
  *_elem   distances written out per column; *_mm: by products
  *_dot    moments by products; *_red: by broadcast multiply-and-sum
  cols_mm  (D, N) with the distances and the moments by products over the rows' axis
Each runs over all rows at once and over blocks of rows (`--blocks`, dividing N).
`estep.stats` picks its layout by backend: this script is how it was picked (RESULTS.md).

    .venv/bin/python benchmarks/estep_layout.py --n 10485760 --d 10 --k 2,8,16 \
        --variants estep,kb_elem,rows_elem_dot --blocks 1048576,2097152
"""

import argparse
import math
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

from bayesmix._jit import full_precision  # noqa: E402
from bayesmix.infer.estep import _over_components, block_rows, stats  # noqa: E402
from bayesmix.model import Params  # noqa: E402

L2PI = math.log(2 * math.pi)


def _prep(params, c, dtype):
    p = jax.tree.map(lambda v: v.astype(dtype), params)
    var = p.scale**2
    mc = p.locs - c.astype(dtype)
    lw0 = jnp.log(p.weights) - 0.5 * jnp.sum(jnp.log(var), -1) - 0.5 * p.locs.shape[1] * L2PI
    return var, mc, lw0


def rows_elem(params, x, c, moments="dot"):
    """(B, K) layout, distances written out over D (elementwise: fusible)."""
    var, mc, lw0 = _prep(params, c, x.dtype)
    xc = x - c.astype(x.dtype)
    d = x.shape[1]
    iv = 1 / var
    d2 = sum((xc[:, j, None] - mc[None, :, j]) ** 2 * iv[None, :, j] for j in range(d))
    lw = lw0[None, :] - 0.5 * d2
    top = jnp.max(lw, axis=1, keepdims=True)
    p = jnp.exp(lw - top)
    tot = jnp.sum(p, axis=1, keepdims=True)
    r = p / tot
    loglik = jnp.sum(top[:, 0] + jnp.log(tot[:, 0]))
    n = jnp.sum(r, axis=0)
    if moments == "dot":
        s, q = r.T @ xc, r.T @ (xc * xc)
    else:
        s = jnp.sum(r[:, :, None] * xc[:, None, :], axis=0)
        q = jnp.sum(r[:, :, None] * (xc * xc)[:, None, :], axis=0)
    return loglik, n, s, q


def rows_mm(params, x, c, moments="dot"):
    """(B, K) layout, distances by products."""
    var, mc, lw0 = _prep(params, c, x.dtype)
    xc = x - c.astype(x.dtype)
    iv = 1 / var
    d2 = (xc * xc) @ iv.T + xc @ (-2 * mc * iv).T + jnp.sum(mc * mc * iv, -1)[None, :]
    lw = lw0[None, :] - 0.5 * jnp.maximum(d2, 0)
    top = jnp.max(lw, axis=1, keepdims=True)
    p = jnp.exp(lw - top)
    tot = jnp.sum(p, axis=1, keepdims=True)
    r = p / tot
    if moments == "dot":
        s, q = r.T @ xc, r.T @ (xc * xc)
    else:
        s = jnp.sum(r[:, :, None] * xc[:, None, :], axis=0)
        q = jnp.sum(r[:, :, None] * (xc * xc)[:, None, :], axis=0)
    return jnp.sum(top[:, 0] + jnp.log(tot[:, 0])), jnp.sum(r, 0), s, q


def cols(params, xt, c, moments="dot"):
    """Data transposed (D, N): (K, N) layout, distances written out over D."""
    var, mc, lw0 = _prep(params, c, xt.dtype)
    xc = xt - c.astype(xt.dtype)[:, None]
    iv = 1 / var
    d2 = sum((xc[None, j, :] - mc[:, j, None]) ** 2 * iv[:, j, None] for j in range(xt.shape[0]))
    lw = lw0[:, None] - 0.5 * d2
    top = jnp.max(lw, axis=0)
    p = jnp.exp(lw - top)
    tot = jnp.sum(p, axis=0)
    r = p / tot
    loglik = jnp.sum(top + jnp.log(tot))
    if moments == "dot":
        s, q = r @ xc.T, r @ (xc * xc).T
    else:
        s = jnp.sum(r[:, None, :] * xc[None], axis=2)
        q = jnp.sum(r[:, None, :] * (xc * xc)[None], axis=2)
    return loglik, jnp.sum(r, 1), s, q


def cols_mm(params, xt, c):
    """Data transposed (D, N): distances and moments by products over the rows' axis, the
    components reduced by `_over_components` (as `estep._block_stats`)."""
    var, mc, lw0 = _prep(params, c, xt.dtype)
    xc = xt - c.astype(xt.dtype)[:, None]
    iv = 1 / var
    d2 = iv @ (xc * xc) - (2 * mc * iv) @ xc + jnp.sum(mc**2 * iv, -1)[:, None]
    lw = lw0[:, None] - 0.5 * jnp.maximum(d2, 0.0)
    top = _over_components(jnp.maximum, lw)
    p = jnp.exp(lw - top)
    tot = _over_components(jnp.add, p)
    r = p / tot
    s, q = jnp.einsum("kb,db->kd", r, xc), jnp.einsum("kb,db->kd", r, xc * xc)
    return jnp.sum(top + jnp.log(tot)), jnp.sum(r, 1), s, q


def kb_elem(params, x, c):
    """(K, B) layout as in `estep._block_stats`, distances written out over D (its D <= 2 form)
    and reduced over the components by its elementwise tree; moments by products."""
    var, mc, lw0 = _prep(params, c, x.dtype)
    xc = x - c.astype(x.dtype)
    d2 = sum((xc[None, :, j] - mc[:, j, None]) ** 2 / var[:, j, None] for j in range(x.shape[1]))
    lw = lw0[:, None] - 0.5 * d2
    top = _over_components(jnp.maximum, lw)
    p = jnp.exp(lw - top)
    tot = _over_components(jnp.add, p)
    r = p / tot
    return jnp.sum(top + jnp.log(tot)), jnp.sum(r, 1), r @ xc, r @ (xc * xc)


def estep(params, x, c):
    """`estep.stats` over one block (blocked() gives it other block sizes)."""
    st = stats(params, x, x.shape[0], c, moment="diag", block=x.shape[0])
    return st.loglik, st.n, st.s, st.q


def blocked(fn, block, axis=0):
    """fn over blocks of `block` rows (along `axis` of the data), the statistics summed."""

    def run(params, x, c):
        n = x.shape[axis]
        nb = n // block

        def body(i, acc):
            xb = jax.lax.dynamic_slice_in_dim(x, i * block, block, axis)
            return jax.tree.map(lambda a, b: a + b.astype(jnp.float64), acc, fn(params, xb, c))

        k, d = params.locs.shape
        zero = (jnp.zeros(()), jnp.zeros(k), jnp.zeros((k, d)), jnp.zeros((k, d)))
        return jax.lax.fori_loop(0, nb, body, zero)

    return run


def timeit(f, *a, reps=7):
    jax.block_until_ready(f(*a))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*a))
        ts.append(time.perf_counter() - t)
    return min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=float, default=1e6)
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--k", default="2,8,16")
    ap.add_argument("--variants", default="all")
    ap.add_argument("--blocks", default="")
    a = ap.parse_args()
    n, d = int(a.n), a.d
    print(jax.default_backend(), jax.devices()[0].device_kind, time.strftime("%F %T"), flush=True)
    key = jax.random.key(0)
    for k in [int(v) for v in a.k.split(",")]:
        cen = 3 * jax.random.normal(key, (k, d))
        z = jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, k)
        x = (cen[z] + jax.random.normal(jax.random.fold_in(key, 2), (n, d))).astype(jnp.float32)
        del z
        params = Params(jnp.full(k, 1 / k), cen + 0.3, jnp.ones((k, d)) * 1.2)
        c = jnp.mean(x, 0).astype(jnp.float64)
        blk = block_rows(k, d)
        ref_f = jax.jit(
            full_precision(
                lambda p, x, c, b=blk: stats(p, x, x.shape[0], c, moment="diag", block=b)
            )
        )
        ref = ref_f(params, x, c)
        refv = (ref.loglik, ref.n, ref.s, ref.q)
        ex = jax.jit(lambda a: jnp.exp(a))
        zz = jax.random.normal(key, (n, k), jnp.float32)
        floor = timeit(ex, zz)
        t_ref = timeit(ref_f, params, x, c)
        print(
            f"N={n:.0e} D={d} K={k}: floor {floor * 1e3:.3f} ms, "
            f"estep.stats (block {blk}) {t_ref * 1e3:.3f} ms",
            flush=True,
        )
        xt = jnp.asarray(x.T)
        cands = {
            "rows_elem_dot": (lambda p, x, c: rows_elem(p, x, c, "dot"), x),
            "rows_elem_red": (lambda p, x, c: rows_elem(p, x, c, "red"), x),
            "kb_elem": (kb_elem, x),
            "estep": (estep, x),
            "rows_mm": (rows_mm, x),
            "rows_mm_red": (lambda p, x, c: rows_mm(p, x, c, "red"), x),
            "cols_dot": (lambda p, x, c: cols(p, x, c, "dot"), xt),
            "cols_red": (lambda p, x, c: cols(p, x, c, "red"), xt),
            "cols_mm": (cols_mm, xt),
        }
        for name, (fn, data) in cands.items():
            if a.variants != "all" and name not in a.variants.split(","):
                continue
            blks = [int(v) for v in a.blocks.split(",")] if a.blocks else [blk]
            for bname, f in [("one block", fn)] + [(f"blocks {b}", b) for b in blks]:
                if not callable(f):
                    if n % f:
                        continue
                    f = blocked(fn, f, 1 if name.startswith("cols") else 0)
                g = jax.jit(full_precision(f))
                try:
                    out = g(params, data, c)
                    err = max(
                        float(jnp.max(jnp.abs(o - r)) / (jnp.max(jnp.abs(r)) + 1e-30))
                        for o, r in zip(out, refv, strict=True)
                    )
                    t = timeit(g, params, data, c)
                    print(
                        f"   {name:14s} {bname:14s} {t * 1e3:8.3f} ms  x{t_ref / t:5.2f} vs "
                        f"estep  floor/t {floor / t:.2f}  relerr {err:.1e}",
                        flush=True,
                    )
                except Exception as e:
                    print(f"   {name} {bname}: {type(e).__name__} {str(e)[:200]}", flush=True)


if __name__ == "__main__":
    main()

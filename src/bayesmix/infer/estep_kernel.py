"""The diagonal Normal E-step as one GPU kernel (Pallas on Triton): each row read once.

XLA compiles `estep.stats` into several fusions whose (K, B) intermediates go through memory
more than once per iteration: at 1e7 x 10 on an H200 the E-step took 3-10x its data's read.
Here one program per block of `rows` rows computes, in registers, the rows' squared distances
(written out per column: exact far from the centres), their log-sum-exp, the responsibilities
and their sums over the block; only the sums are written, (K,) + 2 (D, K) + 1 per block, and
summed by XLA in `accumulator_dtype()` as `stats` sums its blocks.

Only for what it covers (`covers`): float32 rows, Normal components with diagonal (also
spherical / shared) scales, up to 32 of them, on a GPU where JAX has Pallas' Triton backend
(deprecated since JAX 0.11 in favour of Mosaic GPU: its warning is silenced here, and where the
backend is gone or its deprecation made an error, XLA's E-step is used). `interpret=True` runs
the same kernel anywhere (tests).
"""

from __future__ import annotations

import math
import warnings
from functools import cache, partial

import jax
import jax.numpy as jnp

from ..model import Params
from .estep import Stats, accumulator_dtype

__all__ = ["covers", "diag_stats", "launch"]

_LOG_2PI = math.log(2.0 * math.pi)
_DEPRECATED = "The Pallas Triton backend is deprecated"
#: Whether `estep.stats` uses the kernel where it `covers` (benchmarks turn it off).
KERNEL = True
#: Up to this many components and dimensions: the (rows, K) tiles and the D columns live in
#: registers (at 64 components they spilled: 3.3x slower than XLA's E-step at 1e7 x 10 on an
#: H200; its speed was measured at D = 1 and 10).
MAX_K = 32
MAX_D = 16


def covers(params: Params, x: jnp.ndarray, moment: str) -> bool:
    """Whether `diag_stats` computes the E-step of `params` over x (N, D) here: on a GPU, for
    float32 rows of at most MAX_D columns, at most MAX_K Normal components with diagonal scales,
    and row numbers within int32."""
    k, d = params.locs.shape
    return (
        KERNEL
        and jax.default_backend() == "gpu"
        and _triton_backend()
        and moment == "diag"
        and params.df is None
        and params.corr_chol is None
        and x.dtype == jnp.float32
        and k <= MAX_K
        and d <= MAX_D
        and x.shape[0] < 2**31 - 1024
    )


def _pow2(n: int) -> int:
    return 1 << max(1, (n - 1).bit_length())


@cache
def _triton_backend() -> bool:
    """Whether this JAX lowers Pallas kernels by Triton with the API used here (JAX 0.10-0.11;
    its deprecation warning silenced)."""
    try:
        from jax.experimental.pallas import triton
    except ImportError:  # pragma: no cover - a JAX without it
        return False
    if not all(hasattr(triton, name) for name in ("CompilerParams", "load")):
        return False  # pragma: no cover - an older API
    try:
        from jax._src import deprecations

        if deprecations.is_accelerated("jax-pallas-triton"):  # pragma: no cover
            return False
    except (ImportError, AttributeError, ValueError):  # a JAX before the deprecation
        pass
    warnings.filterwarnings("ignore", _DEPRECATED, DeprecationWarning)
    return True


def launch(k: int) -> tuple[int, int]:
    """(rows, warps) per program for K components: 4 warps and 4 rows per thread up to 4
    components, 2 up to 16, then 1 (H200, E-step at 1e7 x 10: K = 2 fastest at 512 rows, 8 at
    256, 16 at 256 or 512 with 8 warps, 32 at 128; 512 rows at K = 16 spilled registers, 3.6x
    slower)."""
    kp = _pow2(k)
    return (4 if kp <= 4 else 2 if kp <= 16 else 1) * 128, 4


def _kernel(lim_ref, x_ref, c_ref, a_ref, b_ref, k_ref, ll_ref, n_ref, s_ref, q_ref, *, d, rows):
    """One block of rows: lim (2,) = [first, stop) the rows counted; x (N, D); c (D,) the
    centre; a, b (D, Kp) = 1 / var and locs - c (zero for the padding components); k (Kp,) the
    components' log weight and normalizer (-inf for padding). Writes the block's sum of
    log-likelihoods ll (G,), counts n (G, Kp), moments s and q (G, D, Kp)."""
    import jax.experimental.pallas as pl
    from jax.experimental.pallas import triton as plgpu

    i = pl.program_id(0)
    start = i * rows
    row = start + jnp.arange(rows, dtype=jnp.int32)
    ok = (row >= lim_ref[0]) & (row < lim_ref[1])
    cols = []
    d2 = None
    for j in range(d):
        xj = plgpu.load(x_ref.at[pl.ds(start, rows), jnp.int32(j)], mask=ok, other=0.0) - c_ref[j]
        cols.append(xj)
        diff = xj[:, None] - b_ref[j][None, :]
        term = diff * diff * a_ref[j][None, :]
        d2 = term if d2 is None else d2 + term
    lw = k_ref[...][None, :] - 0.5 * d2
    top = jnp.max(lw, axis=1)
    p = jnp.exp(lw - top[:, None])
    total = jnp.sum(p, axis=1)
    r = p * jnp.where(ok, 1.0 / total, 0.0)[:, None]
    ll_ref[i] = jnp.sum(jnp.where(ok, top + jnp.log(total), 0.0))
    n_ref[i, :] = jnp.sum(r, axis=0)
    for j, xj in enumerate(cols):
        rx = r * xj[:, None]
        s_ref[i, j, :] = jnp.sum(rx, axis=0)
        q_ref[i, j, :] = jnp.sum(rx * xj[:, None], axis=0)


@partial(jax.jit, static_argnames=("rows", "warps", "interpret"))
def diag_stats(
    params: Params,
    x: jnp.ndarray,
    n_valid,
    c: jnp.ndarray,
    first=0,
    *,
    rows: int | None = None,
    warps: int | None = None,
    interpret: bool = False,
) -> Stats:
    """`estep.stats` (moment "diag", Normal components) of the rows first <= n < n_valid of
    x (N, D) float32, by one kernel launch of ceil(N / rows) programs (`launch` by default)."""
    import jax.experimental.pallas as pl
    from jax.experimental.pallas import triton as plgpu

    n, d = x.shape
    k = params.locs.shape[0]
    kp = _pow2(k)
    auto_rows, auto_warps = launch(k)
    rows, warps = rows or auto_rows, warps or auto_warps
    f32 = jnp.float32
    s = jnp.asarray(params.scale, f32)
    var = jnp.broadcast_to((s**2).reshape(s.shape + (1,) * (2 - s.ndim)), (k, d))
    c = jnp.asarray(c, f32)
    half_logdet = jnp.sum(jnp.log(var), axis=-1) / 2
    const = jnp.log(params.weights.astype(f32)) - half_logdet - 0.5 * d * _LOG_2PI
    pad = ((0, 0), (0, kp - k))
    a = jnp.pad((1 / var).T, pad)
    b = jnp.pad((params.locs.astype(f32) - c).T, pad)
    const = jnp.pad(const, (0, kp - k), constant_values=-jnp.inf)
    lim = jnp.stack([jnp.asarray(first), jnp.asarray(n_valid)]).astype(jnp.int32)
    grid = max(1, -(-n // rows))
    out_shape = (
        jax.ShapeDtypeStruct((grid,), f32),
        jax.ShapeDtypeStruct((grid, kp), f32),
        jax.ShapeDtypeStruct((grid, d, kp), f32),
        jax.ShapeDtypeStruct((grid, d, kp), f32),
    )
    ll, cnt, s1, s2 = pl.pallas_call(
        partial(_kernel, d=d, rows=rows),
        out_shape=out_shape,
        grid=(grid,),
        compiler_params=plgpu.CompilerParams(num_warps=warps, num_stages=1),
        interpret=interpret,
    )(lim, x, c, a, b, const)
    acc = accumulator_dtype()
    total = jnp.clip(jnp.asarray(n_valid) - jnp.asarray(first), 0, None).astype(acc)
    cnt = jnp.sum(cnt[:, :k].astype(acc), axis=0)
    first_m = jnp.sum(s1[:, :, :k].astype(acc), axis=0).T
    second_m = jnp.sum(s2[:, :, :k].astype(acc), axis=0).T
    return Stats(total, jnp.sum(ll.astype(acc)), cnt, cnt, first_m, second_m, jnp.zeros((), acc))

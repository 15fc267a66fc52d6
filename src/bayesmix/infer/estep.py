"""The E-step of MAP-EM: responsibilities reduced to sufficient statistics, additive over rows.

For every row n and component k the responsibility r_nk = p(z_n = k | x_n, globals) is formed
from the same log w_k + log p(x_n | k) as the log joint (`component_log_prob`'s densities; one
exp per element: r = p / sum_k p with p = exp(lw - max_k lw), the numerically stable
log-sum-exp), and immediately reduced to per-component sums (`Stats`). Distances and sums are
matrix products (the floor at large N is the exp, not the memory: see PERFORMANCE.md). For
Student-t components the latent scale of each row enters through u_nk = (nu + D) /
(nu + delta_nk^2), the posterior mean of the Gamma(nu/2, nu/2) precision multiplier of the
scale-mixture representation.

The statistics are sums over rows, so the statistics of a data set are the sums of those of its
chunks: that is what makes the in-memory, chunked, out-of-core and Dask fits the same fit.
Second moments are taken about a centre `c` (D,) that the caller fixes per iteration (the
weighted mean of the current locs), which keeps float32 sums accurate for data far from zero.

Large arrays are processed in blocks of rows inside one compiled loop, so the (rows, K)
intermediates never exceed one block, whatever N is.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln

from .._jit import serializable, sized_jit
from .._threads import cores
from ..model import Params, tril_inverse

__all__ = [
    "MOMENTS",
    "RUNS",
    "Stats",
    "accumulator_dtype",
    "block_rows",
    "estep",
    "moment_kind",
    "data_rows",
    "pad_rows",
    "row_mask",
    "row_mean",
    "row_var",
    "row_ranges",
    "stats",
    "zero_stats",
]

_LOG_2PI = math.log(2.0 * math.pi)
#: The second-moment layout each covariance structure needs.
MOMENTS = {"shared": "diag", "spherical": "diag", "diag": "diag", "full": "full", "tied": "tied"}
#: The E-step runs once per iteration: its `sized_jit` work counts this many runs.
RUNS = 50
#: Elements (rows x components) of one block's (rows, K) intermediates.
BLOCK_ELEMENTS = 1 << 17
#: Full / tied blocks on the CPU: at least this many rows (1e6 rows, float32, against K D
#: x rows of BLOCK_ELEMENTS: D = 10, K = 16 200 -> 145 ms, K = 8 120 -> 99 ms; tied D = 10,
#: K = 8 92 -> 86 ms; D = 20, K = 3 and D = 5, K = 4 even; 8192 rows lost at D = 20) ...
FULL_ROWS = 4096
#: ... while their intermediates stay within this many elements (8 MB of float32).
FULL_ELEMENTS = 1 << 21
#: On an accelerator blocks are this many times larger (it needs far more work per launch).
GPU_SCALE = 64
#: On an accelerator, diagonal distances at D > 2 are written out per column up to this K
#: (H200, whole EM iterations at D = 10 against products: 1e6 rows 1.7 / 1.45 / 1.3 / 1.03x
#: faster at K = 2 / 4 / 8 / 16; 1e7 rows 1.9 / 1.33 / 0.93 / 0.82x).
WRITTEN_OUT_K = 8


#: E-steps are split between the cores from this many rows x components per core on
#: (measured at 1e6 rows on 2 cores, the fit's time per iteration: K = 8 and 16, 1.3-1.4x
#: faster at D = 1 and 10; K = 2 no faster, and at D = 1 slower: 11 -> 14 ms).
PARALLEL_WORK = 1 << 21


@serializable
class Stats(NamedTuple):
    """Sufficient statistics of one E-step; every field is a sum over rows.

    rows: () number of rows; loglik: () sum_n log p(x_n | globals) (the assignments summed
    out); n: (K,) sum_n r_nk; w: (K,) sum_n r_nk u_nk (equals n for Normal components);
    s: (K, D) sum_n r_nk u_nk (x_n - c); q: second moments about c, weighted by r_nk u_nk:
    (K, D) diagonal ("diag"), (K, D, D) ("full"), or (D, D) summed over components ("tied");
    t: () sum_nk r_nk (E[log u_nk] - E[u_nk]) (Student-t with learned df; else 0).
    """

    rows: jnp.ndarray
    loglik: jnp.ndarray
    n: jnp.ndarray
    w: jnp.ndarray
    s: jnp.ndarray
    q: jnp.ndarray
    t: jnp.ndarray


def moment_kind(covariance: str) -> str:
    """ "diag", "full" or "tied": the second moments a covariance structure needs."""
    return MOMENTS[covariance]


def accumulator_dtype() -> jnp.dtype:
    """float64 when JAX has 64-bit enabled, else float32: the dtype statistics are summed in."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def block_rows(k: int, d: int = 1, moment: str = "diag") -> int:
    """Rows per block: about BLOCK_ELEMENTS elements in the block's largest intermediate,
    (K, rows) for diagonal covariances and the whitened rows (K D, rows) for full / tied
    ones; a power of two between 256 and 65536 (on an accelerator GPU_SCALE times more). On
    the CPU full / tied blocks have at least FULL_ROWS rows while their intermediates, (K D,
    rows) and the column products (D (D + 1) / 2, rows), stay within FULL_ELEMENTS."""
    per_row = k if moment == "diag" else k * d
    # An accelerator wants far larger blocks than a CPU's cache does (GPU_SCALE more elements);
    # with the distances written out at D > 2 2^20 rows was best (H200, E-step at 1e7 x 10,
    # K = 2-16: 1.3-1.6x faster than 2^21, 2^22 or all rows).
    scale = 1 if jax.default_backend() == "cpu" else GPU_SCALE
    if scale > 1 and moment == "diag" and d > 2 and _written_out(k, d):
        return 1 << 20
    rows = min((1 << 16) * scale, max(256, _power_of_two(BLOCK_ELEMENTS * scale // per_row)))
    if scale == 1 and moment != "diag":
        widest = max(per_row, d * (d + 1) // 2)  # (K D, rows), (D (D + 1) / 2, rows)
        rows = max(rows, min(FULL_ROWS, _power_of_two(FULL_ELEMENTS // widest)))
    return rows


def _power_of_two(n: int) -> int:
    """The largest power of two <= n (1 for n < 2)."""
    return 1 << max(0, int(n).bit_length() - 1)


def _written_out(k: int, d: int) -> bool:
    """Whether diagonal distances are written out per column (else matrix products): for
    D <= 2, and on an accelerator up to WRITTEN_OUT_K components."""
    return d <= 2 or (jax.default_backend() != "cpu" and k <= WRITTEN_OUT_K)


def _over_components(op, a: jnp.ndarray) -> jnp.ndarray:
    """Reduce a (K, B) array over its component axis with the elementwise `op`, in a tree of
    log2(K) elementwise steps between rows (B,): XLA's CPU reductions over the leading or a
    short trailing axis run 2-5x slower than the exp itself."""
    while a.shape[0] > 1:
        half = a.shape[0] // 2
        pairs = op(a[:half], a[half : 2 * half])
        a = jnp.concatenate([pairs, a[2 * half :]]) if a.shape[0] % 2 else pairs
    return a[0]


def _distances(params: Params, xc: jnp.ndarray, c: jnp.ndarray):
    """(squared Mahalanobis distances (K, B), half log det of each covariance (K,)) of rows
    xc = x - c (B, D), components by rows.

    Diagonal covariances: 1 / var (K, D) times xc^2 plus -2 (locs - c) / var times xc, two
    products over the rows at D > 2; for D <= 2, and on an accelerator for K <=
    WRITTEN_OUT_K, the differences are written out per column (exact for far-away points,
    and fused with what follows); full / tied: every component's whitening L_k^-1 applied to
    the rows in one (K D, D) x (D, B) product, components and coordinates by rows (with the
    rows on the slow axis, (B, K, D), the sums over a short D axis made the E-step at
    120,000 x 3, K = 3 float32 3.9x slower; benchmarks/RESULTS.md, "full_layout").
    """
    k, d = params.locs.shape
    s = jnp.asarray(params.scale)
    mc = params.locs - c
    if params.corr_chol is None:
        var = jnp.broadcast_to((s**2).reshape(s.shape + (1,) * (2 - s.ndim)), (k, d))
        half_logdet = jnp.sum(jnp.log(var), axis=-1) / 2
        if _written_out(k, d):  # as in `model.components.scaled_sq_distances`
            d2 = sum((xc[None, :, j] - mc[:, j, None]) ** 2 / var[:, j, None] for j in range(d))
        else:  # (one product over concatenated [xc^2, xc] ran 6-20% slower at 1e6 x 10)
            d2 = (1 / var) @ (xc * xc).T + (-2 * mc / var) @ xc.T
            d2 = jnp.maximum(d2 + jnp.sum(mc**2 / var, -1)[:, None], 0.0)
        return d2, half_logdet
    chol = s[..., :, None] * params.corr_chol  # (K, D, D) full, (D, D) tied
    white = tril_inverse(chol)
    # (K, D, B); tied: one whitening shared by every component, (1, D, B)
    z = _by_rows(white.reshape(-1, d), xc).reshape(-1, d, xc.shape[0])
    z = z - white @ mc[:, :, None]  # (K, D, 1)
    half_logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return jnp.sum(z * z, axis=1), jnp.broadcast_to(half_logdet, (k,))


def _by_rows(a: jnp.ndarray, xc: jnp.ndarray) -> jnp.ndarray:
    """a (M, D) times every row of xc (B, D): (M, B), the rows on the fast axis."""
    return jax.lax.dot_general(a, xc, (((1,), (1,)), ((), ())))


def _scatter(ru: jnp.ndarray, xc: jnp.ndarray) -> jnp.ndarray:
    """sum_b ru[m, b] xc[b] xc[b]^T (M, D, D) for weights ru (M, B) and rows xc (B, D): one
    product with the D (D + 1) / 2 distinct products of columns (rows on their fast axis;
    an einsum over (M, B, D) ran ~2x slower), mirrored."""
    d = xc.shape[-1]
    i, j = np.tril_indices(d)
    xt = xc.T
    sym = np.zeros((d, d), np.int32)
    sym[i, j] = sym[j, i] = np.arange(i.size)
    return (ru @ (xt[i] * xt[j]).T)[:, sym]


def _block_stats(
    params: Params, x: jnp.ndarray, keep: jnp.ndarray, c: jnp.ndarray, moment: str
) -> Stats:
    """Stats of the rows of x (B, D) where keep (B,) is True.

    The (K, B) intermediates have the rows on the fast axis, reduced over the components by
    `_over_components` and over the rows by matrix products: faster on the CPU than (B, K)
    with XLA's reductions over a short K axis (measured at 1e4-1e6 rows: 1.6-2x for D = 1,
    1.2-1.4x for D = 2 and full covariances, 1.1-1.2x for D = 10).
    """
    d = x.shape[-1]
    xc = x - c
    d2, half_logdet = _distances(params, xc, c)
    log_w = jnp.log(params.weights)[:, None]
    if params.df is None:  # the densities of `component_log_prob`
        lw = log_w - 0.5 * d2 - (half_logdet + 0.5 * d * _LOG_2PI)[:, None]
        u = None
    else:
        nu = params.df
        norm = gammaln(0.5 * (nu + d)) - gammaln(0.5 * nu) - 0.5 * d * jnp.log(nu * math.pi)
        lw = log_w + norm - half_logdet[:, None] - 0.5 * (nu + d) * jnp.log1p(d2 / nu)
        u = (nu + d) / (nu + d2)
    top = _over_components(jnp.maximum, lw)  # (B,)
    p = jnp.exp(lw - top)
    total = _over_components(jnp.add, p)
    r = p * jnp.where(keep, 1.0 / total, 0.0)
    loglik = jnp.sum(jnp.where(keep, top + jnp.log(total), 0.0))
    ru = r if u is None else r * u
    w = jnp.sum(ru, axis=1)
    if moment == "diag":
        q, first = ru @ (xc * xc), ru @ xc
    else:
        first = ru @ xc
        if moment == "full":
            q = _scatter(ru, xc)
        else:  # tied: the components' scatter matrices summed, weighted by sum_k r_nk u_nk
            q = _scatter(_over_components(jnp.add, ru)[None], xc)[0]
    if u is None:
        n, t = w, jnp.zeros((), x.dtype)
    else:
        e_log_u = digamma(0.5 * (params.df + d)) - jnp.log(0.5 * (params.df + d2))
        n, t = jnp.sum(r, axis=1), jnp.sum(r * (e_log_u - u))
    return Stats(jnp.sum(keep).astype(x.dtype), loglik, n, w, first, q, t)


def zero_stats(k: int, d: int, moment: str) -> Stats:
    """`Stats` of no rows, in `accumulator_dtype()`."""
    q_shape = {"diag": (k, d), "full": (k, d, d), "tied": (d, d)}[moment]
    shapes = ((), (), (k,), (k,), (k, d), q_shape, ())
    return Stats(*(jnp.zeros(s, accumulator_dtype()) for s in shapes))


def stats(
    params: Params,
    x: jnp.ndarray,
    n_valid: jnp.ndarray,
    c: jnp.ndarray,
    first: jnp.ndarray = 0,
    *,
    moment: str,
    block: int,
) -> Stats:
    """Stats of the rows first <= n < n_valid of x (N, D), in blocks of `block` rows.

    Blocks are read with a clamped dynamic slice (the last one overlaps its predecessor and
    masks the rows already counted), so no padded copy of x is made; `first` and `n_valid` are
    values, not shapes: one compiled program serves every row range of x. Each block's
    statistics are computed in x's dtype and summed in `accumulator_dtype()`. On a GPU the
    diagonal Normal E-step of float32 rows is one kernel instead (`estep_kernel`).
    """
    from . import estep_kernel  # (which imports Stats from here)

    if estep_kernel.covers(params, x, moment):
        return estep_kernel.diag_stats(params, x, n_valid, c, first)
    n = x.shape[0]
    block = min(block, n)
    acc = accumulator_dtype()
    zero = zero_stats(*params.locs.shape, moment)
    params = jax.tree.map(lambda v: v.astype(x.dtype), params)
    c = c.astype(x.dtype)

    def body(i, total):
        begin = first + i * block
        start = jnp.minimum(begin, n - block)
        xb = jax.lax.dynamic_slice_in_dim(x, start, block, axis=0)
        row = start + jnp.arange(block)
        keep = (row >= begin) & (row < n_valid)
        st = _block_stats(params, xb, keep, c, moment)
        return jax.tree.map(lambda a, b: a + b.astype(acc), total, st)

    if isinstance(first, int) and first == 0 and not isinstance(n_valid, int):
        # The first n_valid rows of a padded array: every block of x, the padding masked (at
        # most an eighth, `pad_rows`). A loop of known length compiles as an unpadded array's
        # does (one of n_valid / block steps ran NUTS 10-30% slower at 2,000-10,000 rows).
        n_blocks = -(-n // block)
    else:
        n_blocks = (n_valid - first + block - 1) // block
    return jax.lax.fori_loop(0, n_blocks, body, zero)


#: In-memory data of at most this many values is fitted from a copy padded to a bucket of rows.
PAD_VALUES = 2**20
#: The smallest bucket of rows.
PAD_MIN_ROWS = 8


def pad_rows(x: np.ndarray) -> tuple[np.ndarray, int | None]:
    """(x (N, D) followed by zero rows up to its bucket's size, N) where N x D <= `PAD_VALUES`,
    else (x itself, None): the programs' (x, n_valid). Buckets: at least `PAD_MIN_ROWS` rows,
    eight per doubling of N, so at most an eighth of the rows are padding (which the E-step's
    last block may compute on). The programs read only the first N rows (`stats`' n_valid,
    a value), so one compiled program serves every N of a bucket: fits of 1,000 and 1,001 rows
    compiled their programs twice (0.6-1 s each for EM, 3.3 s for NUTS, and as many cache
    entries)."""
    n, d = x.shape
    step = 1 << max(2, (n - 1).bit_length() - 4)
    size = max(PAD_MIN_ROWS, -(-n // step) * step)
    if n * d > PAD_VALUES or size == n:
        return x, None
    return np.concatenate([x, np.zeros((size - n, d), x.dtype)]), n


def data_rows(x: jnp.ndarray, n_valid) -> int | jnp.ndarray:
    """How many rows of x (N, ...) are data: n_valid (`pad_rows`), or N for None."""
    return x.shape[0] if n_valid is None else n_valid


def row_mask(x: jnp.ndarray, n_valid) -> jnp.ndarray | None:
    """(N,) True for the data rows of x (N, ...), its first n_valid (`pad_rows`); None for
    all rows (n_valid None)."""
    return None if n_valid is None else jnp.arange(x.shape[0]) < n_valid


def row_mean(v: jnp.ndarray, n_valid=None) -> jnp.ndarray:
    """The mean over the data rows (the first n_valid; all for None) of v (N, ...)."""
    if n_valid is None:
        return jnp.mean(v, axis=0)
    mask = row_mask(v, n_valid).reshape((-1,) + (1,) * (v.ndim - 1))
    return jnp.where(mask, v, 0).sum(axis=0) / n_valid


def row_var(v: jnp.ndarray, n_valid=None, ddof: int = 0) -> jnp.ndarray:
    """The variance over the data rows (the first n_valid; all for None) of v (N, ...)."""
    if n_valid is None:
        return jnp.var(v, axis=0, ddof=ddof)
    return row_mean((v - row_mean(v, n_valid)) ** 2, n_valid) * n_valid / (n_valid - ddof)


def row_ranges(n: int, k: int) -> list[tuple[int, int]]:
    """[(first, stop)] splitting n rows of a K-component E-step into one range per core, each
    of at least `PARALLEL_WORK` rows x components (fewer ranges below that)."""
    parts = max(1, min(cores(), n * k // PARALLEL_WORK))
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


#: `stats`, compiled (`sized_jit`): the E-step of one EM iteration.
estep = sized_jit(stats, static_argnames=("moment", "block"))

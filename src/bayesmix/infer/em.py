"""MAP-EM: the MAP of the globals by expectation-maximization, for data of any size.

Each iteration is one pass over the data (the E-step, `estep`: responsibilities reduced to
additive sufficient statistics) and one small update (the M-step, `mstep.m_step`: closed forms
where the priors are conjugate, Newton steps otherwise). The objective is the same log joint
`fit_map` maximizes (`enumerate.log_joint`, constrained-space densities), it never decreases
from one iteration to the next, and EM's fixed points are its stationary points, so EM and the
gradient fitter reach the same MAP from the same start.

Where the data live decides how a pass runs, not what it computes:
- an in-memory array is put on the device once (in place on the CPU) and whole iterations,
  E-step and M-step, run in one compiled program, many per call (`_device_segment`: on an
  H100 an iteration over 1e6 rows took 0.1-0.5 ms instead of 1.7-2.6 ms with a host round
  trip each); on a CPU with several cores and enough rows, one E-step loop per core over its
  own range of rows, the M-step after them;
- a file path, a `bayesmix.sources` source or a list of files is read chunk by chunk every
  pass (out of core) and the chunks' statistics are summed in float64;
- a Dask array or DataFrame (`bayesmix.distributed`) has each partition's statistics computed
  by the same compiled kernel on the workers and summed by Dask.
The initialization is drawn from one uniform sample of rows chosen by global row index, so it
does not depend on how the data are chunked: all three give the same fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from operator import itemgetter
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._jit import serializable, sized_jit
from .._threads import cores, progress_bar, thread_map
from ..data import LARGE, column_moments, column_names
from ..errors import FitError, FitWarning, SpecError, warn
from ..model import Init, Mixture, Params, Priors, check_k
from ..result import MAPResult
from .estep import (
    RUNS,
    Stats,
    accumulator_dtype,
    block_rows,
    estep,
    moment_kind,
    pad_rows,
    row_ranges,
    stats,
    zero_stats,
)
from .fisher import log_joint_and_stats
from .init import INITS
from .mstep import GENERAL_NEWTON_STEPS, expected_log_joint, update
from .problem import check_init, check_seed, data_priors, whole

__all__ = ["FitInterrupted", "LARGE", "fit_em", "resolve_dtype"]

#: Iterations of one compiled EM segment at most, and the time under which segments grow.
SEGMENT = 64
SEGMENT_S = 0.1


class FitInterrupted(UserWarning):
    """A fit was stopped (Ctrl-C) and returned the best parameters found so far."""


def resolve_dtype(dtype: str | None, size: int) -> np.dtype:
    """The dtype a fit computes in: "auto" is float32 from `LARGE` values on, else the JAX
    default (float64 when 64-bit is enabled)."""
    x64 = accumulator_dtype() == jnp.float64
    if dtype in (None, "auto"):
        return np.dtype(np.float32 if size >= LARGE or not x64 else np.float64)
    if dtype not in ("float32", "float64", np.float32, np.float64):
        raise SpecError(f"dtype must be 'auto', 'float32' or 'float64', got {dtype!r}")
    if np.dtype(dtype) == np.float64 and not x64:
        raise SpecError(
            "dtype='float64' needs 64-bit JAX: run jax.config.update('jax_enable_x64', True) "
            "before fitting, or use dtype='float32'"
        )
    return np.dtype(dtype)


#: EM iterations each initialization runs before the starts are compared (`fit_em`'s
#: init_iters="auto": for Student-t components and for Normal ones whose scales have a
#: closed-form M-step), on the sample's rows (`INIT_EM_ALL_ROWS`). A start's own log joint says
#: little of the mode EM climbs to from it: scored after a short EM ("emEM", Biernacki, Celeux &
#: Govaert 2003), starts compete on where they lead. Measured (`benchmarks/starts.py`): with
#: 2-5% gross outliers, k-means starts (whose Lloyd means chase the outliers) led all 16
#: Student-t fits of four data sets to modes 0.003-0.6 per row worse than the best found;
#: scored after 20 iterations, all 16 ended within 0.001 per row of it (10 iterations were too
#: few: the clusters' mode overtook at 12-15). On the wine data (178 x 13, diag, K = 6 and 8)
#: the starts as they were led to modes 0.26 per row worse (4 seeds), for 0.03 s more a fit;
#: full and tied covariances (Newton M-steps) gained too (wine, K = 3: 0.13 per row) but at
#: up to 7x the fit's time (wine: 0.75 -> 5.4 s warm): not the default there.
INIT_ITERS = 20
#: Newton steps at most of the short EM's full and tied covariance M-steps (a generalized EM:
#: any number raises the objective; the fit's `GENERAL_NEWTON_STEPS` made the short EM 5x the
#: fit on iris, K = 3, and 17x on the wine data, where it also led to a worse mode).
INIT_NEWTON_STEPS = 1
#: The short EM's rows: every row of the initialization's sample up to INIT_EM_ALL_ROWS of
#: them (when that is all the data, by the fit's own compiled EM loop: on rows of its own it
#: compiled the loop a second time, 1-2.5 s, more than 20 passes over 50,000 rows), else
#: `short_em_rows`: its rows x starts at most INIT_EM_WORK, and its rows at least MIN_ROWS.
INIT_EM_WORK = 50_000
INIT_EM_MIN_ROWS = 1_000
INIT_EM_ALL_ROWS = 50_000


def short_em_rows(n_init: int) -> int:
    """Rows of the sample each start's short EM runs on: 5,000 for 10 starts, 1,000 for the
    tutorial's 100 (the short EM then costs ~20 passes over 50,000-100,000 rows)."""
    return max(INIT_EM_MIN_ROWS, INIT_EM_WORK // n_init)


@partial(sized_jit, static_argnames=("model", "n_init", "init"))
def _init_program(x, n_valid, priors, key, *, model, n_init, init):
    """n_init initializations drawn from the first n_valid rows of x: (each one's loss, the
    negative log joint on those rows (inf where not finite), their Params with a leading axis
    n_init, and the Params of the least loss)."""
    starts = jax.vmap(INITS[init], in_axes=(0, None, None, None))(
        jax.random.split(key, n_init), x, model.k, n_valid
    )
    u0 = jax.vmap(lambda s: model.to_unconstrained(model.params_from_init(s)))(starts)

    def loss(u):
        return -log_joint_and_stats(model, model.from_unconstrained(u), x, priors, n_valid)[0]

    losses = jax.vmap(loss)(u0)
    losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
    starts = jax.vmap(model.from_unconstrained)(u0)
    return losses, starts, jax.tree.map(lambda v: v[jnp.argmin(losses)], starts)


@partial(sized_jit, static_argnames=("model",))
def _final_gradient_norm(params, st, c, priors, *, model):
    """|d(-log joint)/du| at params, in the unconstrained space, by Fisher's identity from the
    statistics of the E-step at params (no extra pass over the data)."""

    def neg_q(u):
        return -expected_log_joint(model, model.from_unconstrained(u), st, c, priors)

    g = jax.grad(neg_q)(model.to_unconstrained(params))
    return jnp.sqrt(sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(g)))


def _centre(params: Params, dtype) -> jnp.ndarray:
    """The weighted mean of the locs (D,), the centre of the moments this iteration, rounded
    to the data's dtype: the E-step's x - c and the M-step's c + mean(x - c) then use one c
    (float32 data near 1e6: c's rounding, up to 0.03, shifted every loc by as much)."""
    w = params.weights
    return ((w @ params.locs) / jnp.sum(w)).astype(dtype).astype(params.locs.dtype)


@serializable
class Segment(NamedTuple):
    """What one call of an EM loop's `advance` returns: `count` () iterations run from the
    given parameters, each one E-step and one M-step, stopped early at convergence or at a
    non-finite objective, or at a fall (`fell` ()): an objective below the previous one,
    which exact EM never gives (an iteration that fell is not counted). Per iteration (buffers
    of `SEGMENT` or 1, the first `count` valid): `objectives` at its parameters, `changes`
    {field: norm of its M-step's change}. `params`, `stats`, `centre`: the last parameters
    evaluated and counted, their statistics and centre; `next`: the parameters after the last
    M-step; `converged` ()."""

    count: jnp.ndarray
    objectives: jnp.ndarray
    changes: Params
    converged: jnp.ndarray
    params: Params
    stats: Stats
    centre: jnp.ndarray
    next: Params
    fell: jnp.ndarray


#: A fall: the objective below the previous one by more than this per row, plus its sum's
#: rounding (1e-9 of it, or 256 ulps where it is float32: 300,000 rows summed in float32 moved
#: by +-1 at 4.7e6); float32 statistics round ~1e-7 per row, the falls seen were 1-100 per row.
FALL_PER_ROW = 1e-5
#: Converged also when the objective moved by at most this many eps of itself (float32's
#: where the data or the sums are float32): float32 sums cannot resolve `tol` per row (300,000
#: rows at 4.7e6: an ulp is 0.5, tol x N 0.03), and the fixed point may alternate by 2 ulps
#: for ever (a fit ran all 500 iterations; so did float32 data summed in float64, 20,000 x 50,
#: whose objective moved by +-0.03 at 1.4e6). 16 eps stopped 60 (1e-5 relative) short of the
#: best objective, 4 eps 20, 1 eps 10 (300,000 x 10, K = 4).
CONVERGED_EPS = 4


def _tail(model, priors, params, st, c, prev, prev_alive, it, tols, n_rows, newton_steps):
    """The M-step after an E-step: (objective, next params, change norms, converged, fell).
    prev_alive: the components alive at the previous objective (a pruning changes the
    objective's terms, so it is no fall). newton_steps: `mstep.update`'s."""
    objective, new, change = update(model, params, st, c, priors, newton_steps)
    converged = (it > 0) & settled(objective, prev, tols)
    fell = (it > 0) & (jnp.sum(params.weights > 0) == prev_alive) & falls(objective, prev, n_rows)
    return objective, new, change, converged & ~fell, fell


def settled(objective: jnp.ndarray, prev: jnp.ndarray, tols: tuple) -> jnp.ndarray:
    """Whether `objective` is within tols = (absolute, relative) of `prev` (`convergence`)."""
    absolute, relative = tols
    return jnp.abs(objective - prev) <= jnp.maximum(absolute, relative * jnp.abs(prev))


def convergence(tol: float, n_rows: int, dtype: np.dtype) -> tuple[float, float]:
    """(absolute, relative) changes of the objective that count as converged: tol per row, or
    `CONVERGED_EPS` eps of the coarser of the data's and the sums' dtypes, relative."""
    eps = max(np.finfo(dtype).eps, np.finfo(accumulator_dtype()).eps)
    return tol * n_rows, CONVERGED_EPS * float(eps)


def falls(objective: jnp.ndarray, prev: jnp.ndarray, n_rows: int) -> jnp.ndarray:
    """Whether `objective` lies below `prev` by more than `FALL_PER_ROW` per row and the
    rounding of its sum."""
    rounding = (1e-9 + 256 * jnp.finfo(objective.dtype).eps) * jnp.abs(prev)
    return objective < prev - (FALL_PER_ROW * n_rows + rounding)


@partial(sized_jit, static_argnames=("model",))
def _host_tail(
    params, st, c, priors, prev, prev_alive, it, tols, n_rows, newton_steps, *, model
) -> Segment:
    """One iteration's `Segment` from statistics summed outside a compiled program."""
    objective, new, change, converged, fell = _tail(
        model, priors, params, st, c, prev, prev_alive, it, tols, n_rows, newton_steps
    )
    count = jnp.where(fell, 0, 1).astype(jnp.int32)
    return Segment(count, objective[None], jax.tree.map(lambda v: v[None], change), converged,
                   params, st, c, new, fell)  # fmt: skip


@partial(sized_jit, static_argnames=("model", "moment", "block"))
def _device_segment(
    params, ranges, priors, prev, prev_alive, it, steps, tols, n_rows, newton_steps, *, model,
    moment, block,
):  # fmt: skip
    """Up to `steps` (<= SEGMENT) whole EM iterations in one program, over the in-memory rows
    `ranges` ([(x (N_i, D), first, stop)], `device_ranges`): no round trip to the host
    between iterations (on a GPU that round trip, not the data, was most of an iteration)."""
    acc = accumulator_dtype()

    def iterate(params, prev, prev_alive, i):
        c = _centre(params, ranges[0][0].dtype)
        parts = [stats(params, x, hi, c, lo, moment=moment, block=block) for x, lo, hi in ranges]
        st = jax.tree.map(lambda *v: sum(v[1:], v[0]), *parts)
        tail = _tail(
            model, priors, params, st, c, prev, prev_alive, it + i, tols, n_rows, newton_steps
        )
        return (c, st) + tail

    k, d = params.locs.shape
    # Per iteration: the objective and each field's change.
    buffers = jax.tree.map(lambda v: jnp.full((SEGMENT,), jnp.nan, acc), (prev, params))

    def body(carry):
        i, _, params, prev, prev_alive, last, (objs, changes) = carry
        c, st, objective, new, change, converged, fell = iterate(params, prev, prev_alive, i)
        objs = objs.at[i].set(objective)  # a fall's slot is past `count`: not read
        changes = jax.tree.map(lambda b, v: b.at[i].set(v), changes, change)
        last = jax.tree.map(partial(jnp.where, fell), last, (params, st, c))
        stop = (converged, fell, converged | fell | ~jnp.isfinite(objective))
        alive = jnp.sum(params.weights > 0).astype(jnp.int32)
        return i + 1 - fell, stop, new, objective, alive, last, (objs, changes)

    def cond(carry):
        i, (_, _, stop) = carry[:2]
        return (i < steps) & ~stop

    false = jnp.zeros((), bool)
    last = (params, zero_stats(k, d, moment), jnp.zeros(d, acc))
    start = (
        jnp.zeros((), jnp.int32),
        (false, false, false),
        params,
        jnp.asarray(prev, acc),
        jnp.asarray(prev_alive, jnp.int32),
        last,
        buffers,
    )
    count, (converged, fell, _), new, _, _, last, (objs, changes) = jax.lax.while_loop(
        cond, body, start
    )
    return Segment(count, objs, changes, converged, *last, new, fell)


def run_em(
    model: Mixture,
    params: Params,
    priors: Priors,
    advance: Callable[[Params, float, int, int, int], Segment],
    n_rows: int,
    *,
    max_iter: int,
    tol: float,
    progress: bool | None = None,
    callback: Callable[[int, float, Params], None] | None = None,
) -> tuple[Params, Stats, jnp.ndarray, list[float], dict[str, list[float]], bool]:
    """The EM loop: `advance(params, previous objective, components alive at it, iteration,
    steps)` runs up to `steps` iterations (`Segment`).

    Returns (params, their Stats, their centre, objective per iteration, change norms per
    field, converged). Stops when the objective changed by at most `tol` per row between
    iterations, after `max_iter` E-steps, on Ctrl-C (with the best parameters so far and a
    `FitInterrupted` warning), or at a fall of the objective (with the parameters before it
    and a `FitWarning`: a component collapsing onto repeated values, whose MAP scale is
    below what floating point resolves). Segments grow while one takes under `SEGMENT_S`
    seconds, so the progress bar and Ctrl-C stay responsive; with a callback every iteration
    is a segment.
    """
    acc = accumulator_dtype()
    params = jax.tree.map(lambda v: jnp.asarray(v, acc), params)
    objectives: list[float] = []
    changes: dict[str, list[float]] = {f: [] for f in model.free_fields}
    best = None
    converged = fell = False
    steps = 1
    bar = progress_bar(progress, n_rows * model.k, total=max_iter, unit="it", desc="EM")
    try:
        while len(objectives) < max_iter and not converged and not fell:
            tick = time.perf_counter()
            it = len(objectives)
            prev = objectives[-1] if objectives else 0.0
            alive = model.k if best is None else int(np.sum(np.asarray(best[0].weights) > 0))
            seg = advance(params, prev, alive, it, min(steps, max_iter - it))
            count, objs, change, done, fell = jax.device_get(
                (seg.count, seg.objectives, seg.changes, seg.converged, seg.fell)
            )
            elapsed = time.perf_counter() - tick
            for j, objective in enumerate(objs[:count].tolist()):
                if not math.isfinite(objective):
                    raise FitError(
                        f"the EM objective became non-finite at iteration {it + j + 1}; rescale "
                        "the data, use priors=Priors.from_data(x) or dtype='float64'"
                    )
                objectives.append(objective)
            for f in changes:
                changes[f].extend(np.asarray(getattr(change, f))[:count].tolist())
            if count:
                best = (seg.params, seg.stats, seg.centre)
            params = seg.next
            bar.update(int(count))
            rate = n_rows * count / max(elapsed, 1e-9)
            bar.set_postfix(objective=f"{objectives[-1]:.6g}", rows_per_s=f"{rate:.3g}")
            if callback is not None:
                callback(it, objectives[-1], seg.params)
            elif elapsed < SEGMENT_S:
                steps = min(2 * steps, SEGMENT)
            converged = bool(done)
    except KeyboardInterrupt:
        if best is None:
            raise
        warn(
            f"EM interrupted after {len(objectives)} iterations; returning the best parameters "
            f"so far (log joint {max(objectives):.6g}), not converged",
            FitInterrupted,
        )
    finally:
        bar.close()
    if fell:
        warn(
            f"EM stopped after {len(objectives)} iterations: the next one lowered the log joint, "
            "which exact EM never does. A component is collapsing onto repeated (or nearly "
            "equal) rows: its MAP scale tends to 0, below what floating point resolves. "
            "Returned: the parameters before the fall (not converged). Remove or jitter the "
            "repeated rows, or tighten the scales' prior (e.g. Priors.from_data(x, "
            "scale_scale=0.5))",
            FitWarning,
        )
    params, st, c = best
    # Each iteration's parameters came from the previous iteration's M-step (the first: none).
    changes = {f: [0.0] + v[: len(objectives) - 1] for f, v in changes.items()}
    return params, st, c, objectives, changes, converged


def _check_options(n_init: object, init: str, max_iter: object, tol: float) -> None:
    check_init(init)
    whole("n_init", n_init)
    whole("max_iter", max_iter)
    if not (isinstance(tol, int | float) and tol >= 0):
        raise SpecError(f"tol must be a number >= 0, got {tol!r}")


def _initial_params(
    model: Mixture,
    sample: np.ndarray,
    priors: Priors,
    *,
    init_params: Params | MAPResult | None,
    n_init: int,
    init: str,
    short_em: Callable[[Params], tuple[float, Params]] | None,
    seed: int,
) -> tuple[Params, np.ndarray, int]:
    """(starting params, losses of the scored initializations, index of the best). Each start
    is scored by its own log joint on the sample, or, with `short_em` (a start -> (its loss
    after a short EM, the params it reached); `_short_em`), where a short EM takes it."""
    if init_params is not None:
        p = init_params.params if isinstance(init_params, MAPResult) else init_params
        d = sample.shape[1]
        like = model.params_from_init(Init(jnp.ones(model.k), jnp.zeros((model.k, d)), jnp.ones(d)))
        for f in Params._fields:
            want, got = getattr(like, f), getattr(p, f)
            if (want is None) != (got is None) or (
                want is not None and np.shape(want) != np.shape(got)
            ):
                raise SpecError(
                    f"init_params.{f} has shape {None if got is None else np.shape(got)}; a "
                    f"{model.covariance} {model.family} model with K={model.k}, D={d} needs "
                    f"{None if want is None else np.shape(want)}"
                )
        return p, np.full(1, np.nan), 0
    padded, n_valid = pad_rows(sample)
    # The starts stay on the device: as the program's outputs (and the EM loop's), a host
    # copy put back would compile the EM loop's program a second time.
    losses, starts, first_params = _init_program(
        jnp.asarray(padded, accumulator_dtype()), n_valid, priors, jax.random.key(seed),
        work=sample.size * model.k * n_init, model=model, n_init=int(n_init), init=init,
    )  # fmt: skip
    losses = np.asarray(losses)
    first = int(np.argmin(losses))
    if short_em is None:
        return first_params, losses, first
    each = [jax.tree.map(itemgetter(i), starts) for i in range(n_init)]
    # The first compiles the program (once), the others run side by side, one per core.
    shorts = [short_em(each[0]), *thread_map(short_em, each[1:], cores())]
    short_losses = np.array([loss for loss, _ in shorts])
    best = int(np.argmin(short_losses))
    if not np.isfinite(short_losses[best]):  # every start degenerate: the best as it was
        return first_params, losses, first
    return shorts[best][1], short_losses, best


def _short_em(advance: Callable, model: Mixture, d: int, iters: int) -> Callable:
    """start -> (the negative log joint after `iters` EM iterations by `advance` (`_em_loop`'s:
    on small data the fit's own, no program of its own to compile), inf for a degenerate
    start; the params reached)."""
    # Rows a component needs for its scales to be estimable: D + 1 for a full covariance,
    # 2 for per-component scales (a tied or shared scale borrows every row).
    need = {"full": d + 1, "diag": 2, "spherical": 2}.get(model.covariance, 0)
    exact = (0.0, 0.0)  # no convergence test: `iters` iterations, as many for every start

    def run(start: Params) -> tuple[float, Params]:
        p = jax.tree.map(lambda v: jnp.asarray(v, accumulator_dtype()), start)
        objective, done = math.nan, 0
        while done < iters:
            seg = advance(p, objective if done else 0.0, model.k, done,
                          min(SEGMENT, iters - done), tols=exact,
                          newton_steps=INIT_NEWTON_STEPS)  # fmt: skip
            count, objs, fell, n = jax.device_get(
                (seg.count, seg.objectives, seg.fell, seg.stats.n)
            )
            if count == 0 or fell:
                return math.inf, p
            objective, done, p = float(objs[count - 1]), done + int(count), seg.next
            # The objective is of the parameters before the last M-step, which raised it. A
            # start whose objective fell, or with a component on fewer rows than its scales
            # need, was climbing to a degenerate maximum (a component collapsing onto a few
            # rows, whose log joint grows without bound): emEM prefers those, for they climb
            # fastest (iris, K = 4 full: weight 0.024, a singular covariance, at 175 vs 203).
            if not math.isfinite(objective) or np.any((n > 0) & (n < need)):
                return math.inf, p
        return -objective, p

    return run


#: In-memory rows from this one on are the device's view of the caller's memory (CPU).
HEAD_ROWS = 64


def device_ranges(x: np.ndarray, k: int, block: int) -> list[tuple[jax.Array, int, int]]:
    """x (N, D) as row ranges [(device array, first, stop)] whose statistics add up: one per
    core (`row_ranges`), and on the CPU the caller's memory itself where it can be.

    JAX reads host memory in place only from a 64-byte aligned address (NumPy's large arrays
    start 16 bytes past one). The first `HEAD_ROWS` rows are a copy of their own range and the
    rest are read in place from the first aligned row (one copy of x where no row is
    aligned). The blocks and ranges lie at the same rows, whatever the address: float32 sums,
    whose rounding depends on their grouping, are the same from one process to the next."""
    n = len(x)
    if jax.default_backend() != "cpu" or not x.flags.c_contiguous or n < HEAD_ROWS + block:
        whole = jax.device_put(x, may_alias=True)
        return [(whole, lo, hi) for lo, hi in row_ranges(n, k)]
    start, row = x.ctypes.data % 64, x.strides[0]
    aligned = next((r for r in range(HEAD_ROWS) if (start + r * row) % 64 == 0), None)
    head = jax.device_put(x[:HEAD_ROWS], may_alias=False)
    if aligned is None:
        rest, aligned = jax.device_put(x, may_alias=False), 0
    else:
        rest = jax.device_put(x[aligned:], may_alias=True)
    ranges = row_ranges(n - HEAD_ROWS, k)
    return [(head, 0, HEAD_ROWS)] + [
        (rest, HEAD_ROWS + lo - aligned, HEAD_ROWS + hi - aligned) for lo, hi in ranges
    ]


def _em_loop(
    tols: tuple[float, float],
    n: int,
    *,
    model: Mixture,
    priors: Priors,
    moment: str,
    block: int,
    dt: np.dtype,
    rows: np.ndarray | None = None,
    e_step: Callable | None = None,
) -> Callable:
    """An EM loop's `advance(params, previous objective, components alive, iteration, steps,
    tols=tols, newton_steps=GENERAL_NEWTON_STEPS)` (`run_em`) over n in-memory `rows` (N, D)
    or by an `e_step(params, centre)`."""
    if rows is not None:
        padded, n_valid = pad_rows(rows)
        if n_valid is None:
            ranges = device_ranges(rows, model.k, block)
        else:  # one device copy, read by range
            on_device = jax.device_put(padded)
            ranges = [(on_device, lo, hi) for lo, hi in row_ranges(n, model.k)]
        if len({id(xd) for xd, _, _ in ranges}) < len(ranges):  # the rows split between cores
            e_step = _threaded_e_step(ranges, model.k, moment, block)

    newton = GENERAL_NEWTON_STEPS

    def segment(p, prev, alive, it, steps, tols=tols, newton_steps=newton) -> Segment:
        """Whole iterations in one program."""
        work = n * rows.shape[1] * model.k * RUNS
        return _device_segment(p, ranges, priors, prev, alive, it, steps, tols, n, newton_steps,
                               work=work, model=model, moment=moment, block=block)  # fmt: skip

    def host(p, prev, alive, it, steps, tols=tols, newton_steps=newton) -> Segment:
        """One iteration: statistics summed outside a compiled program, then the M-step."""
        c = _centre(p, dt)
        st = e_step(p, np.asarray(c))
        return _host_tail(p, st, c, priors, prev, alive, it, tols, n, newton_steps, work=0,
                          model=model)  # fmt: skip

    return segment if e_step is None else host


def _threaded_e_step(ranges: list, k: int, moment: str, block: int) -> Callable:
    """e_step(params, centre) -> Stats over in-memory row ranges [(x, first, stop)], each
    summed by its own core (one compiled program for all)."""
    first_call = True

    def e_step(p: Params, c: np.ndarray) -> Stats:
        nonlocal first_call

        def part(r):
            xd, lo, hi = r
            return estep(p, xd, hi, c, lo, moment=moment, block=block, work=xd.size * k * RUNS)

        # The first call compiles (once: one range after the other).
        parts = thread_map(part, ranges, 1 if first_call else cores())
        first_call = False
        return jax.tree.map(lambda *v: sum(v[1:], v[0]), *parts)

    return e_step


def sample_indices(n_rows: int, size: int, seed: int) -> np.ndarray:
    """The rows the initialization is drawn from: all of them in order when n_rows <= size,
    else `size` distinct rows chosen uniformly (sorted), by global row index."""
    if n_rows <= size:
        return np.arange(n_rows)
    rng = np.random.default_rng(seed)
    # Memory O(size), not O(n_rows): Generator.choice(replace=False) permutes the whole
    # population for size > n_rows / 50 (80 MB at 1e7 rows). The distinct values among iid
    # uniform draws are a uniformly random subset given their number, and so is a uniform
    # subset of them.
    draws = np.unique(rng.integers(0, n_rows, size + size // 4, dtype=np.int64))
    if len(draws) < size:  # n_rows < ~4 size: the population itself is small
        return np.sort(rng.choice(n_rows, size, replace=False))
    return np.sort(draws[rng.choice(len(draws), size, replace=False)])


def fit_em(
    data: object,
    k: int,
    *,
    covariance: str = "shared",
    family: str = "normal",
    df: float | None = None,
    priors: Priors | str = Priors(),  # noqa: B008 (an immutable NamedTuple)
    n_init: int = 10,
    init: str = "kmeans",
    init_iters: int | str = "auto",
    init_params: Params | MAPResult | None = None,
    init_sample: int = 100_000,
    max_iter: int = 500,
    tol: float = 1e-7,
    seed: int = 0,
    dtype: str = "auto",
    columns: list[str] | None = None,
    chunk_rows: int | None = None,
    memory_budget: int | None = None,
    progress: bool | None = None,
    callback: Callable[[int, float, Params], None] | None = None,
) -> MAPResult:
    """MAP globals of a K-component mixture by EM, in memory, out of core or on Dask.

    Parameters
    ----------
    data : an (N, D) or (N,) array; a Parquet or CSV file path (or a list of them), read in
        chunks; a `bayesmix.sources` source; or a Dask array / DataFrame
    k : number of components, 1 <= k <= N
    covariance, family, df : the model (see `bayesmix.model.Mixture`)
    priors : a `Priors`, or "auto" for `Priors.from_data`'s rule (computed from streamed
        column means and standard deviations for chunked data)
    n_init, init, init_iters, seed : n_init initializations drawn from `init_sample` rows
        chosen uniformly (all rows when N <= init_sample), each followed by init_iters EM
        iterations on those rows (up to 50,000 of them; beyond, `short_em_rows(n_init)` of
        them chosen uniformly) and scored by the log joint there; EM goes on from where the
        best got to. init_iters "auto": `INIT_ITERS`, except 0 for Normal components with
        full or tied covariances (the best start by its own log joint: with N <=
        init_sample, the start `fit_map` picks for the same n_init, init and seed). init:
        "kmeans" (default: greedy k-means++ seeding and Lloyd iterations,
        `bayesmix.infer.init.init_kmeans`), "kmeans++" (seeding only) or "seed".
    init_params : start from these parameters (or a fit's) instead
    max_iter : E-steps at most
    tol : converged when the objective changed by at most tol per row between iterations (or
        by `CONVERGED_EPS` eps of float32 relative, where that is larger and the data or the
        sums are float32)
    dtype : "auto" (float32 from a million values on, else the JAX default), "float32", "float64";
        statistics are always summed in float64 when 64-bit JAX is enabled
    columns : the columns to read from files or DataFrames (default: every column)
    chunk_rows, memory_budget : rows per chunk for chunked data, or a memory budget in bytes
        that sets it (see `bayesmix.sources.open_source`)
    progress : a progress bar with rows per second (default: on for large fits; off a
        terminal a line a minute, see `_threads.progress_bar`)
    callback : called as callback(iteration, objective, params) after every E-step

    Returns
    -------
    MAPResult, as `fit_map`'s: `losses` (iterations,) is the negative log joint at each
    iteration's parameters (non-increasing); `grad_norms` {field: (iterations,)} holds the
    norm of each field's change in the M-step that produced that iteration's parameters (0 for
    the first): EM computes no gradients; `final_grad_norm` is the gradient norm of the
    negative log joint in the unconstrained space at the result (nan once a component is
    emptied); `init_losses` are the scored initializations' losses after their short EM (with
    init_params: the loss of those parameters on all rows).
    """
    from .. import sources  # the chunked readers import pyarrow lazily

    _check_options(n_init, init, max_iter, tol)
    if init_iters == "auto":
        newton = covariance in ("full", "tied")  # (their short EM: seconds more; see above)
        init_iters = INIT_ITERS if family == "student-t" or not newton else 0
    if isinstance(init_iters, str):
        raise SpecError(f"init_iters must be 'auto' or a whole number >= 0, got {init_iters!r}")
    whole("init_iters", init_iters, 0)
    check_seed(seed)
    data, columns = sources.select_columns(data, columns)
    source = sources.as_source(data, columns=columns, chunk_rows=chunk_rows, budget=memory_budget)
    if source is None:
        x, scan = sources.as_matrix(data)
        n, d = x.shape
    else:
        scan = source.scan()
        n, d = scan.rows, scan.mean.shape[0]
    model = Mixture(check_k(k, n), covariance, family, df)
    priors = data_priors(priors, *(column_moments(x) if scan is None else (scan.mean, scan.sd)))
    whole("init_sample", init_sample, 2)
    dt = resolve_dtype(dtype, n * d)
    moment = moment_kind(covariance)
    block = block_rows(model.k, d, moment)
    loop = partial(_em_loop, model=model, priors=priors, moment=moment, block=block, dt=dt)
    if source is not None:
        advance = loop(
            convergence(tol, n, dt),
            n,
            e_step=partial(source.stats, moment=moment, block=block, dtype=dt),
        )
    else:
        advance = loop(convergence(tol, n, dt), n, rows=np.asarray(x, dt))
    idx = sample_indices(n, max(init_sample, model.k), seed)
    sample = x[idx] if source is None else source.take(idx)
    short_em = None
    if init_iters and init_params is None:
        m = len(sample) if len(sample) <= INIT_EM_ALL_ROWS else short_em_rows(n_init)
        if source is None and m == n:  # every row, in order: the fit's own loop
            short_em = _short_em(advance, model, d, init_iters)
        else:
            rows = np.asarray(sample[sample_indices(len(sample), m, seed)], dt)
            short_em = _short_em(loop(convergence(tol, m, dt), m, rows=rows), model, d, init_iters)
    params, init_losses, best_init = _initial_params(
        model, sample, priors, init_params=init_params, n_init=n_init, init=init, seed=seed,
        short_em=short_em,
    )  # fmt: skip

    params, st, c, objectives, changes, converged = run_em(
        model,
        params,
        priors,
        advance,
        n,
        max_iter=max_iter,
        tol=tol,
        progress=progress,
        callback=callback,
    )
    grad = _final_gradient_norm(params, st, c, priors, work=0, model=model)
    return MAPResult(
        model=model,
        params=jax.tree.map(np.asarray, params),
        priors=priors,
        neg_log_joint=-objectives[-1],
        log_likelihood=float(st.loglik),
        init_losses=init_losses if init_params is None else -np.asarray(objectives[:1]),
        best_init=best_init,
        losses=-np.asarray(objectives),
        grad_norms={f: np.asarray(v) for f, v in changes.items()},
        final_grad_norm=float(grad) if np.all(np.asarray(params.weights) > 0) else math.nan,
        converged=converged,
        columns=column_names(data) if source is None else source.names,
    )

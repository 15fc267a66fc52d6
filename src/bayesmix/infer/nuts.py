"""Collapsed NUTS: the full posterior of weights, locs and scale, assignments summed out.

Stan's window adaptation (step size + diagonal mass matrix, built from BlackJAX's parts) and
BlackJAX's NUTS kernel, one compiled program per chain; on a CPU the chains run side by side, one
per core. The target is the log joint of the enumerated model in the unconstrained space plus the
log-Jacobian of the constraining maps.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from functools import partial
from operator import itemgetter
from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from .._jit import serializable, sized_jit
from .._threads import cores, progress_bar, thread_map
from ..errors import FitError, SpecError, warn
from ..model import Init, Mixture, Params, Priors, off_the_boundary
from ..result import MAX_TREE_DEPTH, Posterior, posterior_diagnostics
from . import fisher
from .em import FitInterrupted
from .estep import pad_rows
from .init import INITS
from .problem import check_init, check_seed, problem, whole
from .units import inverse_curvature, unit_scales

__all__ = ["check_init_params", "log_density_u", "sample_nuts"]

#: A chain runs in pieces of about this many seconds (`sample_nuts`), the first of
#: `FIRST_STEPS` steps.
SEGMENT_S = 0.25
FIRST_STEPS = 64

# Memory per chain above which we refuse (draws of locs dominate): 8 GiB in all.
_MAX_DRAW_BYTES = 8 * 2**30


def log_density_u(
    u: Params, model: Mixture, x: jnp.ndarray, priors: Priors, n_valid=None
) -> jnp.ndarray:
    """Unnormalized log posterior of unconstrained globals (with the log-Jacobian), given the
    first n_valid rows of x (all for None)."""
    return fisher.log_joint(model, model.from_unconstrained(u), x, priors, n_valid) + (
        model.log_abs_det_jacobian(u)
    )


def _chain_key(chain: jnp.ndarray) -> jax.Array:
    """The PRNG key of chain = (seed, c), made inside the programs: eager PRNG ops (a key, its
    split, its rows) each compiled on a cold run, 0.3 s in all, a tenth of the seed model's."""
    return jax.random.fold_in(jax.random.key(chain[0]), chain[1])


def _start(x, priors, chain, u_given, n_valid=None, *, model, init):
    """One chain's start (a few passes over the rows; in `_chain_start`'s cheaply compiled
    program: in the chain's it cost ~1 s more compile at N = 1e4): (the unconstrained start, the
    log density and its gradient there, the initial inverse mass matrix (P,)). u_given: the
    start, or None to draw one by `init` (with the first of the chain's key's three parts).

    The inverse mass matrix is the inverse of the log density's curvature along each
    coordinate at the start (forward differences of the gradient, P + 1 passes). Stan starts
    from the unit metric, whose first windows ran ~30 leapfrog steps per step at N = 10,000,
    where the posterior's scales are 0.005-0.02; this one scales each coordinate from the
    first step (warm-up 30% shorter there). Above CURVATURE_MAX_P parameters the passes would
    cost a noticeable part of the warm-up: the unit metric. Difference steps and bounds are
    taken in the chains' units (`unit_scales`), so that they do not depend on the data's.
    n_valid: the rows of x that are data (the others pad it; all for None)."""
    if u_given is None:
        k_init = jax.random.split(_chain_key(chain), 3)[0]
        init_ = INITS[init](k_init, x, model.k, n_valid)
        u_given = model.to_unconstrained(model.params_from_init(init_))
    flat, unravel = jax.flatten_util.ravel_pytree(u_given)
    value_and_grad = jax.value_and_grad(
        lambda f: log_density_u(unravel(f), model, x, priors, n_valid)
    )
    value, grad, inverse = inverse_curvature(value_and_grad, flat, unit_scales(u_given, x, n_valid))
    return u_given, value.astype(flat.dtype), unravel(grad), inverse.astype(flat.dtype)


@serializable
class Chain(NamedTuple):
    """A chain's state between steps, in data-free units z = u / units (`unit_scales`):
    BlackJAX's HMC state, the dual-averaging and mass-matrix adaptation states (as plain
    tuples, which cross `jax.export`), the step size and metric in use ((inverse mass matrix,
    its momentum factor), `_metric_state`), the draws kept so far ((draws, ...) buffers:
    params, (divergent, acceptance, steps), energy) and the units."""

    state: tuple
    da: tuple
    mm: tuple
    step_size: jnp.ndarray
    metric: tuple
    kept: tuple
    units: jnp.ndarray


def _first_state(x, start, n_valid=None, *, model, draws, dense_mass) -> Chain:
    """The `Chain` before the first step from `_start`'s (u, log density, gradient, inverse
    mass matrix (P,)), in the chain's units (`unit_scales` of the first n_valid rows of x)."""
    from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
    from blackjax.adaptation.step_size import dual_averaging_adaptation
    from blackjax.mcmc.hmc import HMCState

    u, value, grad, inverse_mass = start
    units = unit_scales(u, x, n_valid)
    # The chain moves a flat vector: per-leaf operations on a Params position were repeated
    # per leaf in the program (the momentum's normal draw, compiled four times on the seed).
    flat, _ = jax.flatten_util.ravel_pytree(u)
    state = HMCState(flat / units, value, jax.flatten_util.ravel_pytree(grad)[0] * units)
    inverse_mass = inverse_mass / units**2
    mm_init = mass_matrix_adaptation(not dense_mass)[0]
    mm = mm_init(inverse_mass.size, jnp.diag(inverse_mass) if dense_mass else inverse_mass)
    da = dual_averaging_adaptation(0.5)[0](1.0)  # (the target is not part of the state)
    step_size = jnp.ones_like(da.log_step_size)  # BlackJAX's initial step size
    like = (model.from_unconstrained(u), (False, jnp.zeros((), value.dtype), 0), value)
    kept = jax.tree.map(lambda v: jnp.zeros((draws, *jnp.shape(v)), jnp.asarray(v).dtype), like)
    leaves = jax.tree.leaves
    return Chain(tuple(leaves(state)), tuple(leaves(da)), tuple(leaves(mm)), step_size,
                 _metric_state(mm.inverse_mass_matrix), kept, units)  # fmt: skip


def _metric_state(inverse_mass: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(inverse_mass, S) with S S^T = inverse_mass^-1 (the mass matrix; (P,) or (P, P)), S the
    factor momenta are drawn with, as BlackJAX's Gaussian Euclidean metric computes it."""
    if inverse_mass.ndim == 1:
        return inverse_mass, 1 / jnp.sqrt(inverse_mass)
    chol = jax.scipy.linalg.cholesky(inverse_mass, lower=True)
    eye = jnp.eye(inverse_mass.shape[0], dtype=inverse_mass.dtype)
    return inverse_mass, jax.scipy.linalg.solve_triangular(chol, eye, lower=True, trans=True)


def _metric(inverse_mass: jnp.ndarray, factor: jnp.ndarray):
    """What NUTS's kernel is given: a diagonal `inverse_mass` as it is; for a dense one,
    BlackJAX's Gaussian Euclidean metric with its momenta drawn with the given
    factor (`_metric_state`), computed only where the mass matrix changes: given the matrix alone,
    BlackJAX factors it at every step (0.66 ms at P = 44, iris with full covariances, as long
    as a whole trajectory there). Its own factors then feed only the metric's `scale`, which
    NUTS never calls: dead code, left out of the program."""
    from blackjax.mcmc.metrics import gaussian_euclidean
    from blackjax.util import generate_gaussian_noise

    if inverse_mass.ndim == 1:
        return inverse_mass

    def sample_momentum(key, position):
        return generate_gaussian_noise(key, position, sigma=factor)

    return gaussian_euclidean(inverse_mass)._replace(sample_momentum=sample_momentum)


@partial(sized_jit, static_argnames=("model", "init", "draws", "dense_mass"))
def _chain_start(x, priors, chain, u_given, n_valid=None, *, model, init, draws, dense_mass):
    """`_first_state` of `_start`, one program (as two, the second's compile and call came
    after the first's, ~0.1 s of a cold seed run)."""
    start = _start(x, priors, chain, u_given, n_valid, model=model, init=init)
    return _first_state(x, start, n_valid, model=model, draws=draws, dense_mass=dense_mass)


@partial(sized_jit, static_argnames=("model", "warmup", "draws", "target_accept", "dense_mass"))
def _nuts_chain(
    x, priors, chain, carry, begin, end, n_valid=None, *, model, warmup, draws, target_accept,
    dense_mass,
):  # fmt: skip
    """Steps begin <= i < end of one chain (a `Chain` from `_first_state` or from the previous
    steps'): Stan's window adaptation for the first `warmup` steps, then `draws` NUTS steps,
    in one loop over one NUTS kernel (after BlackJAX's `window_adaptation`, which runs its
    own, the draws needed a second one: 1.5-2.5 s more compile at N = 1e4). begin and end are
    values: one program runs a chain whole or in pieces (`sample_nuts`'s progress and
    Ctrl-C). Only the draws are kept (in the carry), so memory does not grow with `warmup`."""
    import blackjax  # lazy: only tracing needs it (bayesmix._jit)
    from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
    from blackjax.adaptation.step_size import dual_averaging_adaptation
    from blackjax.adaptation.window_adaptation import build_schedule
    from blackjax.mcmc.hmc import HMCState

    _, k_warm, k_draw = jax.random.split(_chain_key(chain), 3)
    units = carry.units
    first = jax.tree.map(itemgetter(0), carry.kept[0])
    _, unravel = jax.flatten_util.ravel_pytree(model.to_unconstrained(first))

    @jax.jit  # traced once for its several call sites (the integrator's)
    def logdensity(z):
        return log_density_u(unravel(z * units), model, x, priors, n_valid)

    kernel = blackjax.nuts.build_kernel()
    mm_init, mm_update, mm_final = mass_matrix_adaptation(not dense_mass)
    da_init, da_update, da_final = dual_averaging_adaptation(target_accept)

    # Per step: the window (0 fast: step size only, 1 slow: + mass matrix, 2: sampling), the
    # end of a slow window, the last warm-up step.
    with jax.ensure_compile_time_eval():  # BlackJAX builds the schedule with jnp
        schedule = np.asarray(build_schedule(warmup), dtype=np.int32).reshape(-1, 2)
    window, window_end = schedule.T
    window = np.concatenate([window, np.full(draws, 2, np.int32)])
    window_end = np.concatenate([window_end, np.zeros(draws, np.int32)]).astype(bool)
    last = np.arange(warmup + draws) == warmup - 1
    slot = np.maximum(np.arange(warmup + draws) - warmup, 0).astype(np.int32)  # draw index
    keys = jnp.concatenate([jax.random.split(k_warm, warmup), jax.random.split(k_draw, draws)])

    def adapt(da, mm, metric, window, window_end, position, acceptance):
        """Stan's warm-up (as BlackJAX's window_adaptation): dual averaging of the step size;
        Welford's covariance over each slow window, at whose end the mass matrix (the
        metric) is set and the step size restarted."""
        da = jax.lax.cond(window == 2, lambda: da, lambda: da_update(da, acceptance))
        mm = jax.lax.cond(window == 1, lambda: mm_update(mm, position), lambda: mm)

        def end():
            new = mm_final(mm)
            return da_init(da_final(da)), new, _metric_state(new.inverse_mass_matrix)

        return jax.lax.cond(window_end, end, lambda: (da, mm, metric))

    def step(i, carry):
        state, da, mm, step_size, metric, kept, units = carry
        window_i, window_end_i = jnp.asarray(window)[i], jnp.asarray(window_end)[i]
        state, info = kernel(
            keys[i], state, logdensity, step_size, _metric(*metric),
            max_num_doublings=MAX_TREE_DEPTH,
        )  # fmt: skip
        da, mm, metric = adapt(
            da, mm, metric, window_i, window_end_i, state.position, info.acceptance_rate
        )
        warming = window_i != 2
        step_size = jnp.where(warming, jnp.exp(da.log_step_size), step_size)
        step_size = jnp.where(jnp.asarray(last)[i], jnp.exp(da.log_step_size_avg), step_size)
        stats = (info.is_divergent, info.acceptance_rate, info.num_integration_steps)
        out = (model.from_unconstrained(unravel(state.position * units)), stats, info.energy)
        # Only the draws are kept (a warm-up step writes slot 0, which the first draw takes).
        kept = jax.tree.map(
            lambda b, v: jax.lax.dynamic_update_index_in_dim(
                b, v.astype(b.dtype), jnp.asarray(slot)[i], 0
            ),
            kept,
            out,
        )
        return Chain(state, da, mm, step_size, metric, kept, units)

    # BlackJAX's states from the carry's leaves, and back.
    states = (HMCState(*carry.state), da_init(1.0), mm_init(len(units), carry.metric[0]))
    structures = [jax.tree.structure(v) for v in states]
    state, da, mm = (jax.tree.unflatten(t, v) for t, v in zip(structures, carry[:3], strict=True))
    carry = jax.lax.fori_loop(begin, end, step, carry._replace(state=state, da=da, mm=mm))
    return carry._replace(
        **{f: tuple(jax.tree.leaves(getattr(carry, f))) for f in Chain._fields[:3]}
    )


_CHAIN_LIKES: dict = {}


def _chain_like(x, start_like, n_valid, **states) -> Chain:
    """The shapes and dtypes of `_first_state`'s Chain for `_start`'s (`_start_like`), every
    leaf strongly typed as the NumPy carries of the calls (a weak type recompiles), traced once
    per model and shapes (~20 ms a trace)."""
    leaves, tree = jax.tree.flatten(start_like)
    key = (x.shape, x.dtype, n_valid is None, tree, tuple((v.shape, v.dtype) for v in leaves),
           tuple(sorted(states.items())))  # fmt: skip
    if key not in _CHAIN_LIKES:
        shapes = jax.eval_shape(partial(_first_state, **states), x, start_like, n_valid)
        _CHAIN_LIKES[key] = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), shapes)
    return _CHAIN_LIKES[key]


def _start_like(u: Params | None, model: Mixture, d: int) -> tuple:
    """The shapes and dtypes `_start` returns for the start u (None: drawn), without it."""
    if u is None:
        u = model.unconstrained_like(d)
    u = jax.tree.map(lambda v: jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v)), u)
    size = sum(v.size for v in jax.tree.leaves(u))
    real = jnp.result_type(*jax.tree.leaves(u))
    return u, jax.ShapeDtypeStruct((), real), u, jax.ShapeDtypeStruct((size,), real)


def check_init_params(
    init_params: object, model: Mixture, x: np.ndarray, priors: Priors, chains: int
) -> Params:
    """Starting positions for `chains` chains as unconstrained Params with a leading chain
    axis, or SpecError. `init_params`: Params of `model` for one start (every chain starts
    there) or with a leading axis of length `chains` (one start per chain); weights of 0 (an
    EM fit's emptied components) start off the boundary (`off_the_boundary`). x: (N, D)."""
    if not isinstance(init_params, Params):
        raise SpecError(
            f"init_params must be a bayesmix Params (e.g. fit.params of a MAP fit), got "
            f"{type(init_params).__name__}"
        )
    n, d = x.shape
    init_params = off_the_boundary(init_params, n, priors.weights_concentration)
    like = model.params_from_init(
        Init(np.ones(model.k) / model.k, np.zeros((model.k, d)), np.ones(d))
    )
    out = {}
    for name in Params._fields:
        ref, v = getattr(like, name), getattr(init_params, name)
        if ref is None:
            out[name] = None
            continue
        if v is None:
            raise SpecError(f"init_params.{name} is missing; the {model.covariance} model needs it")
        v = np.asarray(v, dtype=np.float64)
        one, per_chain = np.shape(ref), (chains, *np.shape(ref))
        if v.shape == one:
            v = np.broadcast_to(v, per_chain)
        if v.shape != per_chain:
            raise SpecError(
                f"init_params.{name} has shape {v.shape}; expected {one} (one start for every "
                f"chain) or {per_chain} (one per chain)"
            )
        out[name] = v
    u = jax.vmap(model.to_unconstrained)(jax.tree.map(jnp.asarray, Params(**out)))
    bad = [f for f in model.free_fields if not np.all(np.isfinite(getattr(u, f)))]
    if bad:
        raise SpecError(
            f"init_params.{bad[0]} is outside its support (weights must be positive and sum to "
            "one, scales positive, correlation factors valid, everything finite); start from "
            "a MAP fit's params"
        )
    return u


def sample_nuts(
    data: object,
    k: int,
    *,
    covariance: str = "shared",
    family: str = "normal",
    df: float | None = None,
    priors: Priors | str = Priors(),  # noqa: B008 (an immutable NamedTuple)
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    init: str = "kmeans",
    target_accept: float = 0.95,
    dense_mass: bool = False,
    init_params: Params | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> Posterior:
    """Draw from p(globals | x) by collapsed NUTS.

    covariance, family, df and priors define the model as for `fit_map`.
    Each chain starts from its own initialization (`init` scheme, as for the MAP fit; by
    default k-means on a subsample: from random data points, the tutorial's "seed", 2 of 8
    chains at N = 10,000, K = 3 spent 6-10x the others' warm-up, two components having started
    in one cluster; with full covariances at 20,000 x 3, after 200 warm-up steps, 522
    leapfrogs a draw against 18-22: the chains start hundreds of posterior widths from the
    mode), adapts for `warmup` steps and keeps `draws` draws. The defaults (4 chains,
    1000 + 1000) give a checkable posterior; the tutorial used 1 chain, 50 warm-up steps and
    250 draws.
    `dense_mass` adapts a full mass matrix instead of a diagonal one. Where parameters are
    strongly correlated it pays (three overlapping clusters, 20,000 x 2 rows: 9x the effective
    draws per second; iris: 1.8-2.9x; one component more than the data's clusters: 48x);
    elsewhere it can lose (1,000 x 1 rows of overlapping clusters: 0.5x; chains in distinct
    modes: 2.6x slower); benchmarks/RESULTS.md, "dense mass matrix". `init_params` starts
    the chains from given positions instead (Params of the model, e.g. MAP fits: one start
    for all chains, or a leading axis of length `chains`; see `sample_multistart`).
    `progress`: a progress bar of the chains' steps (default: on for long runs; off a
    terminal a line a minute, see `_threads.progress_bar`). Ctrl-C stops the chains within a
    fraction of a second and returns the draws so far (of the chains past their warm-up, with a
    `FitInterrupted` warning).

    Returns a Posterior whose params have leading axes (chains, draws) (weights (chains,
    draws, K), locs (chains, draws, K, D), ...), sampler statistics and diagnostics (R-hat, ESS,
    divergences, warnings).
    """
    x, model, priors, columns = problem(data, k, covariance, family, df, priors)
    chains, warmup, draws = (
        whole("chains", chains),
        whole("warmup", warmup, 10),
        whole("draws", draws),
    )
    if not 0 < target_accept < 1:
        raise SpecError(f"target_accept must be between 0 and 1, got {target_accept}")
    check_init(init)
    nbytes = chains * draws * model.num_free_parameters(x.shape[1]) * 8
    if nbytes > _MAX_DRAW_BYTES:
        raise SpecError(
            f"{chains} chains x {draws} draws of {model.k} components would need "
            f"{nbytes / 2**30:.1f} GiB to keep; use fewer chains or draws"
        )
    u_init = (
        None if init_params is None else check_init_params(init_params, model, x, priors, chains)
    )
    seed = check_seed(seed)
    chain_ids = [np.array([seed, c], np.int64) for c in range(chains)]  # (seed, chain)
    given = [None if u_init is None else jax.tree.map(itemgetter(c), u_init) for c in range(chains)]
    settings = dict(
        # Every step is a pass over the rows: all but tiny runs get the optimized build (3.6x
        # faster at N = 1e4, D = 2, K = 3 for 1.5 s more compile; the seed stays cheap).
        work=x.size * model.k * chains * (warmup + draws),
        model=model,
        warmup=int(warmup),
        draws=int(draws),
        target_accept=float(target_accept),
        dense_mass=bool(dense_mass),
    )

    # Small data is padded to a bucket of rows, of which the programs read the first N: one
    # compiled program serves every N of the bucket.
    padded, n_valid = pad_rows(x)
    # Traced here, the chains' program compiles (XLA, ~3-4 s at N = 1e4, without the GIL) while
    # the starts are computed (a few passes each; the cheap build serves), once for all chains.
    states = dict(model=model, draws=int(draws), dense_mass=bool(dense_mass))
    like = _chain_like(padded, _start_like(given[0], model, x.shape[1]), n_valid, **states)
    step = jax.ShapeDtypeStruct((), np.int32)
    program = _nuts_chain.lower(padded, priors, chain_ids[0], like, step, step, n_valid, **settings)

    def prepare(task: int):
        if task == 0:
            return program.compile()
        return [
            _chain_start(padded, priors, k, u, n_valid, work=0, init=init, **states)
            for k, u in zip(chain_ids, given, strict=True)
        ]

    # On the host, as the compiled signature's placeholders (a device array would recompile).
    starts = jax.device_get(thread_map(prepare, range(2), cores())[1])

    total = warmup + draws
    stop = threading.Event()
    bar = progress_bar(progress, settings["work"], total=chains * total, unit="step", desc="NUTS")

    def chain(c: int) -> tuple[int, tuple]:
        """Chain c in pieces of about SEGMENT_S seconds each (so that the progress bar moves
        and Ctrl-C stops it soon; each piece costs ~2 ms), sized by the steps' speed so far:
        (steps run, the draws kept)."""
        carry, done, steps = starts[c], 0, FIRST_STEPS
        while done < total and not stop.is_set():
            tick, end = time.perf_counter(), min(done + steps, total)
            run = _nuts_chain(padded, priors, chain_ids[c], carry, np.int32(done),
                              np.int32(end), n_valid, **settings)  # fmt: skip
            carry = jax.device_get(run)  # NumPy: the compiled signature's types
            per_step = (time.perf_counter() - tick) / (end - done)
            steps = max(1, int(SEGMENT_S / max(per_step, 1e-9)))
            done = progress_of[c] = end
        return done, carry.kept

    # The chains are independent: they run side by side, one per core.
    progress_of = [0] * chains  # steps run per chain, shown by the calling thread
    try:
        runs = thread_map(chain, range(chains), cores(), stop=stop,
                          tick=lambda: bar.update(sum(progress_of) - bar.n))  # fmt: skip
    finally:
        bar.close()
    runs = [r for r in runs if r is not None and r[0] > warmup]
    if stop.is_set():  # Ctrl-C: the draws every chain that reached them has
        if not runs:
            raise KeyboardInterrupt
        kept = min(done for done, _ in runs) - warmup
        late = f" ({chains - len(runs)} more were still warming up)" if len(runs) < chains else ""
        warn(
            f"NUTS interrupted: returning the first {kept} draws of the {len(runs)} chain"
            f"{'s' * (len(runs) > 1)} past their warm-up{late}",
            FitInterrupted,
        )
        runs = [(done, jax.tree.map(lambda v: v[:kept], draws)) for done, draws in runs]
    params, (divergent, accept, steps), energy = jax.tree.map(
        lambda *c: np.stack(c), *(draws for _, draws in runs)
    )
    params = jax.tree.map(np.asarray, params)
    if not all(np.all(np.isfinite(v)) for v in jax.tree.leaves(params)):
        raise FitError("NUTS produced non-finite draws; check the data and priors")
    post = Posterior(
        model=model,
        params=params,
        sampler={
            "diverging": np.asarray(divergent),
            "acceptance_rate": np.asarray(accept),
            "num_steps": np.asarray(steps),
            "energy": np.asarray(energy),
        },
        columns=columns,
    )
    return replace(post, diagnostics=posterior_diagnostics(post, x))

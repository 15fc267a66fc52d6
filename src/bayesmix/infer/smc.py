"""Tempered sequential Monte Carlo: a posterior that visits every mode, and the evidence.

Particles start at prior draws (which cover every mode and every labelling) and move through
the tempered posteriors p(globals) p(x | globals)^beta, beta from 0 to 1, with BlackJAX's
adaptive tempered SMC: each step picks the next beta so that the effective sample size of the
reweighted particles is `target_ess` of their number, resamples (systematic), and moves every
particle by `mcmc_steps` HMC transitions of the current tempered target. The HMC inverse mass
matrix is the particles' variance (per unconstrained coordinate); the step size follows the
acceptance rate of the previous step. A final resample-and-move at beta = 1 gives equally
weighted draws. Independent runs play the role of chains: their disagreement (R-hat between
runs) and the spread of their evidence estimates are the checks. They run side by side, one
per core (as NUTS's chains).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from functools import partial
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.smc import adaptive_tempered, resampling, tempered
from jax.flatten_util import ravel_pytree

from .._jit import serializable, sized_jit
from .._threads import cores, progress_bar, thread_map
from ..errors import FitError, SpecError
from ..model import Mixture, Priors, log_prior
from ..result import Posterior, posterior_diagnostics
from ..simulate import sample_prior
from . import fisher
from .estep import pad_rows
from .problem import check_seed, problem, whole

__all__ = ["SMC_MAX_BYTES", "sample_smc"]

#: Refuse runs whose working arrays (particles x points x components, with gradients) exceed
#: this many bytes.
SMC_MAX_BYTES = 8 * 2**30
_TARGET_ACCEPT = 0.8
#: A run goes on in pieces of tempering steps that double while one takes under this many
#: seconds (progress and Ctrl-C).
SEGMENT_S = 0.25


@serializable
class _Carry(NamedTuple):
    """A run between tempering steps: BlackJAX's tempered state as (particles, weights,
    tempering parameter) and the loop's key as its data (plain, to cross `jax.export`), the
    log evidence so far, the log step size, the steps taken, and per step (max_steps,) the
    temperature and the mean acceptance."""

    state: tuple
    key: jnp.ndarray
    log_z: jnp.ndarray
    log_step: jnp.ndarray
    step: jnp.ndarray
    temperatures: jnp.ndarray
    acceptance: jnp.ndarray


class _Settings(NamedTuple):
    """A run's static settings (`sample_smc`'s)."""

    model: Mixture
    particles: int
    runs: int
    mcmc_steps: int
    integration_steps: int
    target_ess: float
    max_steps: int


def _kernels(x, priors, n_valid, s: _Settings):
    """(BlackJAX's adaptive tempered kernel, its fixed-temperature one, the HMC parameters from
    the particles) for the tempered posteriors given the first n_valid rows of x."""
    model = s.model

    def logprior(u):
        return log_prior(model.from_unconstrained(u), priors) + model.log_abs_det_jacobian(u)

    def loglik(u):  # with its gradient by Fisher's identity (fisher.log_joint minus the prior)
        p = model.from_unconstrained(u)
        return fisher.log_joint(model, p, x, priors, n_valid) - log_prior(p, priors)

    hmc = blackjax.hmc.build_kernel()

    def mcmc_step(key, state, logdensity, step_size, inverse_mass_matrix):
        return hmc(key, state, logdensity, step_size, inverse_mass_matrix, s.integration_steps)

    mcmc_init = blackjax.hmc.init
    adaptive = adaptive_tempered.build_kernel(
        logprior, loglik, mcmc_step, mcmc_init, resampling.systematic, s.target_ess
    )
    fixed = tempered.build_kernel(logprior, loglik, mcmc_step, mcmc_init, resampling.systematic)

    def mcmc_parameters(state, log_step):
        rows = jax.vmap(lambda u: ravel_pytree(u)[0])(state.particles)
        mean = jnp.sum(state.weights[:, None] * rows, axis=0)
        var = jnp.sum(state.weights[:, None] * (rows - mean) ** 2, axis=0)
        var = jnp.maximum(var, 1e-10)
        return {"step_size": jnp.exp(log_step)[None], "inverse_mass_matrix": var[None]}

    return adaptive, fixed, mcmc_parameters


def _run_keys(seed_run, runs: int):
    """(prior, loop, last) keys of run seed_run = (seed, r)."""
    return jax.random.split(jax.random.split(jax.random.key(seed_run[0]), runs)[seed_run[1]], 3)


def _smc_begin(x, priors, seed_run, s: _Settings) -> _Carry:
    """A run's `_Carry` at beta = 0: its particles drawn from the prior."""
    k_prior, k_loop, _ = _run_keys(seed_run, s.runs)
    draws = sample_prior(k_prior, s.model, priors, x.shape[1], (s.particles,))
    u0 = jax.vmap(s.model.to_unconstrained)(draws)
    dim = ravel_pytree(jax.tree.map(lambda v: v[0], u0))[0].size
    nan = jnp.full((s.max_steps,), jnp.nan, x.dtype)
    log_step = jnp.log(jnp.asarray(1.0 / dim**0.25, x.dtype))
    zero = jnp.zeros((), x.dtype)
    return _Carry(tuple(tempered.init(u0)), jax.random.key_data(k_loop), zero, log_step,
                  jnp.zeros((), jnp.int32), nan, nan)  # fmt: skip


@partial(sized_jit, static_argnames=("s",))
def _smc_piece(x, priors, seed_run, carry, until, n_valid=None, *, s: _Settings):
    """A piece of run seed_run = (seed, r): from `carry` (drawn from the prior first when its
    step is -1: `_fresh_carry`), tempering steps until beta reaches 1, `max_steps` or step
    `until` (a value: one program runs a run whole or in pieces); then, at the end, one more
    resample and move at beta = 1 (equally weighted, rejuvenated draws). Returns (the carry,
    (params, final acceptance per particle): zeros before the end)."""
    adaptive, fixed, mcmc_parameters = _kernels(x, priors, n_valid, s)
    fresh = carry.step < 0
    c = jax.lax.cond(fresh, lambda: _smc_begin(x, priors, seed_run, s), lambda: carry)

    def cond(c):
        return (c.state.tempering_param < 1.0) & (c.step < jnp.minimum(s.max_steps, until))

    def body(c):
        key, sub = jax.random.split(jax.random.wrap_key_data(c.key))
        state, info = adaptive(sub, c.state, s.mcmc_steps, mcmc_parameters(c.state, c.log_step))
        acc = jnp.mean(info.update_info.acceptance_rate)
        log_step = c.log_step + 2.0 * (jnp.where(jnp.isfinite(acc), acc, 0.0) - _TARGET_ACCEPT)
        return _Carry(
            state,
            jax.random.key_data(key),
            c.log_z + info.log_likelihood_increment,
            log_step,
            c.step + 1,
            c.temperatures.at[c.step].set(state.tempering_param),
            c.acceptance.at[c.step].set(acc),
        )

    c = jax.lax.while_loop(cond, body, c._replace(state=tempered.TemperedSMCState(*c.state)))
    k_last = _run_keys(seed_run, s.runs)[2]

    def end():
        last, info = fixed(k_last, c.state, s.mcmc_steps, 1.0, mcmc_parameters(c.state, c.log_step))
        accept = jnp.mean(info.update_info.acceptance_rate, axis=-1)  # (particles,)
        return jax.vmap(s.model.from_unconstrained)(last.particles), accept

    done = (c.state.tempering_param >= 1.0) | (c.step >= s.max_steps)
    not_yet = jax.tree.map(jnp.zeros_like, jax.eval_shape(end))
    draws = jax.lax.cond(done, end, lambda: not_yet)
    return c._replace(state=tuple(c.state)), draws


def _fresh_carry(x, priors, seed_run, s: _Settings) -> _Carry:
    """A placeholder `_Carry` (zeros, step -1, strongly typed: as the NumPy carries of the
    calls) that `_smc_piece` replaces by prior draws."""
    shapes = jax.eval_shape(partial(_smc_begin, s=s), x, priors, seed_run)
    carry = jax.tree.map(lambda v: np.zeros(v.shape, v.dtype), shapes)
    return carry._replace(step=np.int32(-1))


def sample_smc(
    data: object,
    k: int,
    *,
    covariance: str = "shared",
    family: str = "normal",
    df: float | None = None,
    priors: Priors | str = Priors(),  # noqa: B008 (an immutable NamedTuple)
    particles: int = 2000,
    runs: int = 4,
    mcmc_steps: int = 10,
    integration_steps: int = 10,
    target_ess: float = 0.9,
    max_steps: int = 500,
    seed: int = 0,
    progress: bool | None = None,
) -> Posterior:
    """Draw from p(globals | x) by adaptive tempered SMC (BlackJAX), `runs` independent runs.

    Parameters
    ----------
    data : (N, D) array-like
    k, covariance, family, df, priors : the model, as for `sample_nuts`
    particles : particles per run (the draws of each run)
    runs : independent runs, reported like chains (R-hat between runs)
    mcmc_steps, integration_steps : HMC moves per tempering step, leapfrog steps per move
    target_ess : fraction of the particles' effective sample size kept at each tempering step
        (smaller: fewer, bolder steps)
    max_steps : tempering steps at most (FitError if beta has not reached 1 by then)
    progress : a progress bar of the runs' temperatures (default: on for long runs; off a
        terminal a line a minute); Ctrl-C stops the runs within a fraction of a second

    Returns
    -------
    Posterior with params of leading axes (runs, particles); ``sampler`` holds
    ``log_evidence`` (runs,) (the estimate of log p(x)), ``tempering_steps`` (runs,),
    ``temperatures`` and ``step_acceptance`` (runs, max_steps; NaN after the last step) and
    ``acceptance_rate`` (runs, particles) of the final move; diagnostics as for NUTS plus
    ``log_evidence`` and ``tempering_steps``.
    """
    x, model, priors, columns = problem(data, k, covariance, family, df, priors)
    particles = whole("particles", particles, 2)
    runs = whole("runs", runs, 1)
    mcmc_steps = whole("mcmc_steps", mcmc_steps, 1)
    integration_steps = whole("integration_steps", integration_steps, 1)
    max_steps = whole("max_steps", max_steps, 1)
    seed = check_seed(seed)
    if not 0 < target_ess < 1:
        raise SpecError(f"target_ess must be between 0 and 1, got {target_ess!r}")
    n, d = x.shape
    side_by_side = min(runs, cores())  # runs computed at once, one per core
    # Per particle: the (N, K) grid, its gradient and temporaries; the draws themselves.
    nbytes = side_by_side * particles * (6 * n * model.k + 8 * model.num_free_parameters(d)) * 8
    nbytes += runs * particles * model.num_free_parameters(d) * 8
    if nbytes > SMC_MAX_BYTES:
        raise SpecError(
            f"{particles} particles on {n} points x {model.k} components would need about "
            f"{nbytes / 2**30:.1f} GiB; use fewer particles (or a subsample of the data)"
        )
    settings = _Settings(model, particles, runs, mcmc_steps, integration_steps,
                         float(target_ess), max_steps)  # fmt: skip
    # Work of a run (about 10 tempering steps of HMC moves): SMC runs long enough for the
    # optimized build to pay for its longer compile.
    work = x.size * model.k * particles * mcmc_steps * integration_steps * 10
    padded, n_valid = pad_rows(x)  # small data: one program per bucket of row counts
    seed_runs = [np.array([seed, r], np.int64) for r in range(runs)]
    fresh = _fresh_carry(padded, priors, seed_runs[0], settings)
    # Compiled once, then the runs side by side (each a program on one core; as one program,
    # the runs took turns on one core).
    _smc_piece.lower(padded, priors, seed_runs[0], fresh, np.int32(0), n_valid, s=settings,
                     work=work).compile()  # fmt: skip
    stop = threading.Event()
    bar = progress_bar(
        progress,
        work * runs,
        total=runs,
        unit="run",
        desc="SMC (beta)",
        bar_format="{l_bar}{bar}| {n:.2f}/{total} runs [{elapsed}<{remaining}]",
    )

    def run(seed_run: np.ndarray):
        """One run in pieces that double while one takes under SEGMENT_S seconds (the progress
        bar moves with beta and Ctrl-C stops it soon): its outputs, or None when stopped."""
        carry, steps = fresh, 1
        while not stop.is_set():
            tick = time.perf_counter()
            until = np.int32(max(int(carry.step), 0) + steps)
            carry, draws = jax.device_get(_smc_piece(padded, priors, seed_run, carry, until,
                                                     n_valid, s=settings, work=work))  # fmt: skip
            if time.perf_counter() - tick < SEGMENT_S:
                steps *= 2
            beta = betas[int(seed_run[1])] = float(carry.state[2])
            if beta >= 1.0 or int(carry.step) >= max_steps:
                c, (params, accept) = carry, draws
                return params, c.log_z, c.step, beta, c.temperatures, c.acceptance, accept
        return None

    betas = [0.0] * runs  # each run's temperature, shown by the calling thread
    try:
        out = thread_map(run, seed_runs, side_by_side, stop=stop,
                         tick=lambda: bar.update(sum(betas) - bar.n))  # fmt: skip
    finally:
        bar.close()
    if stop.is_set():  # Ctrl-C: a run stopped before beta = 1 has no posterior draws
        raise KeyboardInterrupt
    params, log_z, steps, beta, temps, step_acc, accept = jax.tree.map(lambda *r: np.stack(r), *out)
    if np.any(np.asarray(beta) < 1.0):
        raise FitError(
            f"tempered SMC did not reach the posterior within {max_steps} tempering steps; "
            "raise max_steps or target_ess, or use more particles"
        )
    params = jax.tree.map(np.asarray, params)
    if not all(np.all(np.isfinite(v)) for v in jax.tree.leaves(params)) or not np.all(
        np.isfinite(log_z)
    ):
        raise FitError("tempered SMC produced non-finite draws; check the data and priors")
    post = Posterior(
        model=model,
        params=params,
        sampler={
            "log_evidence": np.asarray(log_z),
            "tempering_steps": np.asarray(steps),
            "temperatures": np.asarray(temps),
            "step_acceptance": np.asarray(step_acc),
            "acceptance_rate": np.asarray(accept),
        },
        columns=columns,
    )
    diagnostics = posterior_diagnostics(post, x)
    diagnostics["log_evidence"] = [float(v) for v in log_z]
    diagnostics["tempering_steps"] = [int(v) for v in steps]
    if runs > 1 and np.ptp(log_z) > 1.0:
        diagnostics["warnings"].append(
            f"The {runs} SMC runs estimate the log evidence differently (from {log_z.min():.2f} "
            f"to {log_z.max():.2f}): some runs missed part of the posterior. Use more particles "
            "or mcmc_steps."
        )
    return replace(post, diagnostics=diagnostics)

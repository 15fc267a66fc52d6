"""MAP estimation of the globals with the assignments marginalized.

One compiled program: evaluate the loss of `n_init` initializations at once (vmap), keep the
best (the tutorial's "best of 100"), then run Adam (or L-BFGS with a zoom line search,
`optimizer="lbfgs"`) in a `lax.scan`, recording the loss and each parameter's gradient norm at
every step (for large data, `bayesmix.infer.em.fit_em` reaches the same MAP by EM). Parameters
are optimized in the unconstrained space (as Pyro's AutoDelta does) but the objective is the
constrained-space log joint, so the optimum is the MAP of the globals.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._jit import serializable, sized_jit
from ..data import column_moments
from ..errors import FitError, FitWarning, SpecError, warn
from ..model import Mixture, Params, Priors
from ..result import MAPResult
from . import fisher
from .estep import pad_rows
from .init import INITS
from .optim import adam, check_optimizer
from .problem import check_init, check_seed, problem, whole
from .units import unit_scales

__all__ = ["MAPTrace", "fit_map", "neg_log_joint_u"]


@serializable
class MAPTrace(NamedTuple):
    """Per-step diagnostics. loss: (steps,); grad_norm: Params of (steps,) arrays (None for
    fields that are not fitted)."""

    loss: jnp.ndarray
    grad_norm: Params


def neg_log_joint_u(
    u: Params, model: Mixture, x: jnp.ndarray, priors: Priors, n_valid=None
) -> jnp.ndarray:
    """The MAP loss of unconstrained globals u: -log p(globals, x) (gradient by Fisher's
    identity, `fisher.log_joint`), of the first n_valid rows of x (all for None)."""
    return -fisher.log_joint(model, model.from_unconstrained(u), x, priors, n_valid)


def _check_step_size(x: np.ndarray, learning_rate: float) -> None:
    """FitWarning where Adam's steps (~learning_rate, in the data's units) do not suit a
    column's spread: above its sd Adam jitters across the clusters (data of sd 1e-6: a loc
    6e4 sds off), under a thousandth of it the locs barely move from their start (sd 1e6:
    off by 0.5 sd, though the gradient had vanished)."""
    sd = column_moments(x)[1]
    bad = np.flatnonzero((sd < learning_rate) | (sd > 1000 * learning_rate))
    if bad.size:
        j = int(bad[0])
        warn(
            f"Adam moves ~learning_rate = {learning_rate:g} per step in the data's units, and "
            f"column {j} has sd {sd[j]:.3g}: the fit may miss the MAP. Use bm.fit_em "
            "(closed-form steps, whatever the units), rescale the data to sd ~1, or set "
            f"learning_rate near {sd[j] / 30:.3g}",
            FitWarning,
        )


def _norms(g: Params) -> Params:
    return jax.tree.map(lambda leaf: jnp.sqrt(jnp.sum(leaf**2)), g)


@partial(sized_jit, static_argnames=("model", "n_init", "steps", "init", "optimizer"))
def _map_program(
    x,
    priors,
    key,
    lr,
    b1,
    b2,
    final_lr,
    n_valid=None,
    *,
    model,
    n_init,
    steps,
    init,
    optimizer="adam",
):
    """The MAP fit of the first n_valid rows of x (all for None; the rest pad x)."""
    import optax  # lazy: only tracing needs it (bayesmix._jit)

    starts = jax.vmap(INITS[init], in_axes=(0, None, None, None))(
        jax.random.split(key, n_init), x, model.k, n_valid
    )
    u0 = jax.vmap(lambda s: model.to_unconstrained(model.params_from_init(s)))(starts)
    init_losses = jax.vmap(neg_log_joint_u, in_axes=(0, None, None, None, None))(
        u0, model, x, priors, n_valid
    )
    best = jnp.argmin(jnp.where(jnp.isnan(init_losses), jnp.inf, init_losses))
    u = jax.tree.map(lambda leaf: leaf[best], u0)

    loss_grad = jax.value_and_grad(neg_log_joint_u)
    if optimizer == "lbfgs":
        # In data-free units z = u / units (the locs in column sds, as NUTS moves): L-BFGS's
        # first step and its one Hessian scale are shared by every coordinate, and in the
        # data's units (sd 1e4) it stopped 0.3 sd short of the MAP.
        flat, unravel = ravel_pytree(u)
        units = unit_scales(u, x, n_valid)
        opt = optax.lbfgs()

        def loss_z(z):
            return neg_log_joint_u(unravel(z * units), model, x, priors, n_valid)

        cached = optax.value_and_grad_from_state(loss_z)

        def step(carry, _):
            z, state = carry
            loss, g = cached(z, state=state)
            updates, state = opt.update(g, state, z, value=loss, grad=g, value_fn=loss_z)
            return (optax.apply_updates(z, updates), state), MAPTrace(
                loss, _norms(unravel(g / units))
            )

        z0 = flat / units
        (z, _), trace = jax.lax.scan(step, (z0, opt.init(z0)), None, length=steps)
        u = unravel(z * units)
    else:
        opt = adam(lr, b1, b2, final_lr, steps)

        def step(carry, _):
            u, state = carry
            loss, g = loss_grad(u, model, x, priors, n_valid)
            updates, state = opt.update(g, state, u)
            return (optax.apply_updates(u, updates), state), MAPTrace(loss, _norms(g))

        (u, _), trace = jax.lax.scan(step, (u, opt.init(u)), None, length=steps)
    final_loss, g = loss_grad(u, model, x, priors, n_valid)
    params = model.from_unconstrained(u)
    loglik = fisher.log_joint_and_stats(model, params, x, priors, n_valid)[1][0].loglik
    return init_losses, best, params, trace, final_loss, _norms(g), loglik


def fit_map(
    data: object,
    k: int,
    *,
    covariance: str = "shared",
    family: str = "normal",
    df: float | None = None,
    priors: Priors | str = Priors(),  # noqa: B008 (an immutable NamedTuple)
    n_init: int = 100,
    init: str = "seed",
    steps: int = 200,
    learning_rate: float = 0.1,
    betas: tuple[float, float] = (0.8, 0.99),
    final_learning_rate: float | None = None,
    seed: int = 0,
    tol: float = 1e-6,
    optimizer: str = "adam",
) -> MAPResult:
    """MAP globals of a K-component mixture.

    Parameters
    ----------
    data : (N, D) or (N,) array-like
    k : number of components, 1 <= k <= N
    covariance, family, df : the model (see `bayesmix.model.Mixture`); defaults: the seed's
        Gaussian components with one shared spherical scale
    priors : `Priors()` (the seed's), or "auto" (`Priors.from_data(x)`: on the data's scale)
    n_init : initializations scored in one vectorized pass; the best is optimized
    init : "seed" (the tutorial's), "kmeans++" or "kmeans" (k-means++ and Lloyd iterations)
    steps, learning_rate, betas : Adam settings (defaults: the tutorial's)
    final_learning_rate : decay the learning rate exponentially to this value (default: constant)
    tol : the fit counts as converged when the loss changed by less than `tol` (relative)
        over the last 10% of the steps
    optimizer : "adam" (the tutorial's) or "lbfgs" (L-BFGS with a zoom line search; the
        learning-rate settings do not apply; each step may evaluate the loss several times)

    Returns
    -------
    MAPResult with the MAP `params`, `neg_log_joint`, `init_losses` (n_init,), `losses`
    (steps,) and `grad_norms` {name: (steps,)}.
    """
    x, model, priors, columns = problem(data, k, covariance, family, df, priors)
    check_init(init)
    n_init = whole("n_init", n_init)
    check_seed(seed)
    steps, *opt = check_optimizer(steps, learning_rate, betas, final_learning_rate)
    if optimizer not in ("adam", "lbfgs"):
        raise SpecError(f"unknown optimizer {optimizer!r}; choose 'adam' or 'lbfgs'")
    if optimizer == "adam":
        _check_step_size(x, learning_rate)

    padded, n_valid = pad_rows(x)  # small data: one program per bucket of row counts
    out = _map_program(
        padded,
        priors,
        jax.random.key(seed),
        *opt,
        n_valid,
        work=x.size * model.k * n_init,
        model=model,
        n_init=int(n_init),
        steps=int(steps),
        init=init,
        optimizer=optimizer,
    )
    init_losses, best, params, trace, final_loss, final_g, loglik = jax.device_get(out)
    if not np.isfinite(final_loss):
        raise FitError(
            "the MAP fit diverged (non-finite loss); try a smaller learning_rate, more "
            "initializations (n_init), init='kmeans++' or rescaling the data"
        )
    losses = np.asarray(trace.loss)
    window = losses[-max(2, steps // 10) :]
    change = abs(window[0] - final_loss) / (1.0 + abs(final_loss))
    return MAPResult(
        model=model,
        params=jax.tree.map(np.asarray, params),
        priors=priors,
        neg_log_joint=float(final_loss),
        log_likelihood=float(loglik),
        init_losses=np.asarray(init_losses),
        best_init=int(best),
        losses=losses,
        grad_norms={f: np.asarray(getattr(trace.grad_norm, f)) for f in model.free_fields},
        final_grad_norm=float(np.sqrt(sum(float(v) ** 2 for v in jax.tree.leaves(final_g)))),
        converged=bool(change < tol),
        columns=columns,
    )

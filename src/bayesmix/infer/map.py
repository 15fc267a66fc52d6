"""MAP estimation of the globals with the assignments marginalized.

One compiled program: evaluate the loss of `n_init` initializations at once (vmap), keep the
best (the tutorial's "best of 100"), then run Adam in a `lax.scan`, recording the loss and
each parameter's gradient norm at every step. Parameters are optimized in the unconstrained
space (as Pyro's AutoDelta does) but the objective is the constrained-space log joint, so the
optimum is the MAP of weights, locs and scale.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._jit import sized_jit
from ..data import as_data
from ..enumerate import log_joint
from ..errors import FitError, SpecError
from ..model import (
    Params,
    Priors,
    check_k,
    check_priors,
    from_unconstrained,
    to_unconstrained,
)
from ..result import MAPResult
from .init import INITS

__all__ = ["MAPTrace", "fit_map", "neg_log_joint_u"]


class MAPTrace(NamedTuple):
    """Per-step diagnostics. loss: (steps,); grad_norm: Params of (steps,) arrays."""

    loss: jnp.ndarray
    grad_norm: Params


def neg_log_joint_u(u: Params, x: jnp.ndarray, priors: Priors) -> jnp.ndarray:
    """The MAP loss of unconstrained globals u: -log p(globals, x)."""
    return -log_joint(from_unconstrained(u), x, priors)


def _norms(g: Params) -> Params:
    return Params(*(jnp.sqrt(jnp.sum(leaf**2)) for leaf in g))


@partial(sized_jit, static_argnames=("k", "n_init", "steps", "init"))
def _map_program(x, priors, key, lr, b1, b2, *, k, n_init, steps, init):
    inits = jax.vmap(INITS[init], in_axes=(0, None, None))(jax.random.split(key, n_init), x, k)
    u0 = jax.vmap(to_unconstrained)(inits)
    init_losses = jax.vmap(neg_log_joint_u, in_axes=(0, None, None))(u0, x, priors)
    best = jnp.argmin(jnp.where(jnp.isnan(init_losses), jnp.inf, init_losses))
    u = jax.tree.map(lambda leaf: leaf[best], u0)

    opt = optax.adam(lr, b1=b1, b2=b2)
    loss_grad = jax.value_and_grad(neg_log_joint_u)

    def step(carry, _):
        u, state = carry
        loss, g = loss_grad(u, x, priors)
        updates, state = opt.update(g, state, u)
        return (optax.apply_updates(u, updates), state), MAPTrace(loss, _norms(g))

    (u, _), trace = jax.lax.scan(step, (u, opt.init(u)), None, length=steps)
    final_loss, g = loss_grad(u, x, priors)
    return init_losses, best, from_unconstrained(u), trace, final_loss, _norms(g)


def fit_map(
    data: object,
    k: int,
    *,
    priors: Priors = Priors(),  # noqa: B008 (an immutable NamedTuple)
    n_init: int = 100,
    init: str = "seed",
    steps: int = 200,
    learning_rate: float = 0.1,
    betas: tuple[float, float] = (0.8, 0.99),
    seed: int = 0,
    tol: float = 1e-6,
) -> MAPResult:
    """MAP weights, locs and scale of a K-component mixture.

    Parameters
    ----------
    data : (N, D) or (N,) array-like
    k : number of components, 1 <= k <= N
    n_init : initializations scored in one vectorized pass; the best is optimized
    init : "seed" (the tutorial's) or "kmeans++"
    steps, learning_rate, betas : Adam settings (defaults: the tutorial's)
    tol : the fit counts as converged when the loss changed by less than `tol` (relative)
        over the last 10% of the steps

    Returns
    -------
    MAPResult with the MAP `params`, `neg_log_joint`, `init_losses` (n_init,), `losses`
    (steps,) and `grad_norms` {name: (steps,)}.
    """
    x = as_data(data)
    k = check_k(k, x.shape[0])
    priors = check_priors(priors)
    if init not in INITS:
        raise SpecError(f"unknown init {init!r}; choose one of {sorted(INITS)}")
    for name, value, low in (("n_init", n_init, 1), ("steps", steps, 1)):
        if not isinstance(value, int | np.integer) or value < low:
            raise SpecError(f"{name} must be a whole number >= {low}, got {value!r}")
    if not learning_rate > 0 or not all(0 <= b < 1 for b in betas):
        raise SpecError("learning_rate must be > 0 and both betas in [0, 1)")

    out = _map_program(
        jnp.asarray(x),
        priors,
        jax.random.key(seed),
        learning_rate,
        *betas,
        work=x.size * k * n_init,
        k=k,
        n_init=int(n_init),
        steps=int(steps),
        init=init,
    )
    init_losses, best, params, trace, final_loss, final_g = jax.device_get(out)
    if not np.isfinite(final_loss):
        raise FitError(
            "the MAP fit diverged (non-finite loss); try a smaller learning_rate, more "
            "initializations (n_init) or rescaling the data"
        )
    losses = np.asarray(trace.loss)
    window = losses[-max(2, steps // 10) :]
    change = abs(window[0] - final_loss) / (1.0 + abs(final_loss))
    return MAPResult(
        params=Params(*(np.asarray(p) for p in params)),
        priors=priors,
        neg_log_joint=float(final_loss),
        init_losses=np.asarray(init_losses),
        best_init=int(best),
        losses=losses,
        grad_norms={n: np.asarray(v) for n, v in trace.grad_norm._asdict().items()},
        final_grad_norm=float(np.sqrt(sum(float(v) ** 2 for v in final_g))),
        converged=bool(change < tol),
    )

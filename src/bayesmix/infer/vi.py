"""The local variational posterior: the tutorial's guide-side enumeration, done properly.

With the globals fixed at the MAP, q(z_n) = softmax(logits_n) is learned for every point by
maximizing the ELBO  E_q[log p(globals, z, x) - log q(z)], whose expectation over z is computed
exactly by enumerating the K values of each z_n. Unlike the tutorial's `unit_interval`
probabilities, q is a proper distribution; its optimum is the exact responsibilities.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._jit import sized_jit
from ..data import model_data
from ..enumerate import log_weighted
from ..errors import FitError
from ..model import Params, Priors
from ..result import LocalPosterior, MAPResult
from .estep import pad_rows, row_mask
from .mstep import log_prior_alive
from .optim import adam, check_optimizer

__all__ = ["fit_local", "local_elbo_loss"]


def _elbo(logits: jnp.ndarray, lw: jnp.ndarray, alive: jnp.ndarray, rows=None):
    """(sum_n E_q[lw_n - log q_n], its gradient in the logits (N, K)) for q = softmax(logits)
    over the alive (K,) components (weight > 0; the others get q = 0), over the rows where
    rows (N,) is True (all for None). The gradient in closed form: q (f - E_q f), f = lw - log q
    (the terms of log q's own gradient sum to zero)."""
    log_q = jax.nn.log_softmax(jnp.where(alive, logits, -jnp.inf), axis=-1)
    q = jnp.exp(log_q)
    keep = alive if rows is None else alive & rows[:, None]
    qf = jnp.where(keep, q * (lw - log_q), 0.0)
    return jnp.sum(qf), qf - q * jnp.sum(qf, axis=-1, keepdims=True)


def local_elbo_loss(
    logits: jnp.ndarray, params: Params, x: jnp.ndarray, priors: Priors, n_valid=None
):
    """-ELBO of q(z) = softmax(logits) (N, K), globals fixed, over the first n_valid rows of x
    (all for None); includes log p(globals) as the tutorial's loss does, so at the optimum it
    equals the MAP's negative log joint (components of weight 0, which EM's sparse Dirichlet
    step leaves, have q = 0 and no prior, as in its objective)."""
    alive = params.weights > 0
    elbo, _ = _elbo(logits, log_weighted(params, x), alive, row_mask(x, n_valid))
    return -(log_prior_alive(params, priors, alive) + elbo)


@partial(sized_jit, static_argnames=("steps",))
def _local_program(params, x, priors, lr, b1, b2, final_lr, n_valid=None, *, steps):
    """q(z) of the first n_valid rows of x (all for None; the rest pad x, their rows of q
    untouched: Adam's steps are per logit). The log weighted densities (N, K) and the log
    prior are computed once, outside the steps (recomputed in each: 1.28x slower at 2e6 rows)."""
    import optax  # lazy: only tracing needs it (bayesmix._jit)

    alive = params.weights > 0
    lw, rows = log_weighted(params, x), row_mask(x, n_valid)
    lp = log_prior_alive(params, priors, alive)
    logits = jnp.zeros((x.shape[0], params.weights.shape[0]), x.dtype)
    opt = adam(lr, b1, b2, final_lr, steps)

    def step(carry, _):
        logits, state = carry
        elbo, g = _elbo(logits, lw, alive, rows)
        updates, state = opt.update(-g, state, logits)  # the loss is -(lp + elbo)
        norm = jnp.sqrt(jnp.sum(g**2))
        return (optax.apply_updates(logits, updates), state), (-(lp + elbo), norm)

    (logits, _), (losses, norms) = jax.lax.scan(step, (logits, opt.init(logits)), None, steps)
    return jax.nn.softmax(jnp.where(alive, logits, -jnp.inf), axis=-1), losses, norms


def fit_local(
    fit: MAPResult,
    data: object,
    *,
    steps: int = 200,
    learning_rate: float = 0.2,
    betas: tuple[float, float] = (0.8, 0.99),
    final_learning_rate: float | None = None,
) -> LocalPosterior:
    """Learn q(z_n) for every row of `data` (N, D) with the globals fixed at `fit`'s MAP.

    Defaults are the tutorial's (Adam, lr 0.2, betas 0.8/0.99, 200 steps);
    `final_learning_rate` decays the learning rate to that value over the steps. Returns a
    LocalPosterior with `probs` (N, K), rows summing to one, and the loss and gradient-norm
    trace (steps,).
    """
    x = model_data(data, fit.columns, fit.params.locs.shape[-1])
    steps, *opt = check_optimizer(steps, learning_rate, betas, final_learning_rate)
    params = jax.tree.map(np.asarray, fit.params)
    padded, n_valid = pad_rows(x)  # small data: one program per bucket of row counts
    probs, losses, norms = jax.device_get(
        _local_program(
            params,
            padded,
            fit.priors,
            *opt,
            n_valid,
            work=x.size * fit.k * steps,  # every step is a pass over the rows
            steps=steps,
        )
    )
    probs = probs[: len(x)]
    if not np.all(np.isfinite(losses)):
        raise FitError("the local variational fit diverged; try a smaller learning_rate")
    return LocalPosterior(
        probs=np.asarray(probs), losses=np.asarray(losses), grad_norms={"logits": norms}
    )

"""Mean-field variational posterior of the globals: fast, approximate uncertainty.

q(u) = prod_i Normal(u_i | mu_i, sigma_i^2) over the unconstrained globals u (the space NUTS
samples in; the constrained globals are their images, so q is a product of logit-normal,
log-normal and normal factors), fitted by maximizing the ELBO
E_q[log p(globals(u), x) + log |J(u)|] + H[q] with reparameterized Monte Carlo gradients;
the assignments are summed out exactly inside log p, as everywhere in bayesmix. It starts at a
MAP fit (mu = the MAP, sigma = 1 / sqrt of the log density's curvature there, Laplace's
diagonal) and so describes the mode that fit found; it is fitted in units of those sigmas, so
the data's units do not matter.

Known limitation: mean-field q is under-dispersed. Minimizing KL(q || p) makes q fit inside
one mode, ignores correlations between parameters and the posterior's heavy tails, and so
its intervals are too narrow (on the seed data its scale has a fraction of the exact posterior
sd). Use it for quick, rough uncertainty; use NUTS or SMC for calibrated intervals.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._jit import sized_jit
from ..data import model_data
from ..errors import FitError, SpecError
from ..model import off_the_boundary
from ..result import MAPResult, Posterior, posterior_diagnostics
from .estep import pad_rows
from .nuts import log_density_u
from .optim import adam, check_optimizer
from .problem import check_seed, whole
from .units import inverse_curvature, unit_scales

__all__ = ["fit_meanfield"]

_LOG_2PI_E = float(np.log(2 * np.pi) + 1.0)


@partial(sized_jit, static_argnames=("model", "steps", "samples", "draws", "final_samples"))
def _meanfield_program(
    u_map,
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
    steps,
    samples,
    draws,
    final_samples,
):
    """q fitted to the posterior given the first n_valid rows of x (all for None)."""
    import optax  # lazy: only tracing needs it (bayesmix._jit)

    flat, unravel = ravel_pytree(u_map)
    dim = flat.size

    # q is fitted in units of each coordinate's posterior sd, as the curvature at the MAP
    # estimates it (Laplace's; beyond CURVATURE_MAX_P parameters the data's column sds), and
    # starts there: in the data's units Adam's steps and q's starting sd suit data of sd ~1
    # only (sd 1e-3: the locs' q ended 140 posterior sds wide).
    def log_density(f):
        return log_density_u(unravel(f), model, x, priors, n_valid)

    value_and_grad = jax.value_and_grad(log_density)
    units = jnp.sqrt(inverse_curvature(value_and_grad, flat, unit_scales(u_map, x, n_valid))[2])
    log_units = jnp.sum(jnp.log(units))

    def elbo_terms(mu, log_sigma, eps):
        u = (mu + jnp.exp(log_sigma) * eps) * units  # (S, P)
        logp = jax.vmap(log_density)(u)
        return logp + jnp.sum(log_sigma) + log_units + 0.5 * dim * _LOG_2PI_E  # (S,)

    def loss(q, key):
        eps = jax.random.normal(key, (samples, dim), flat.dtype)
        return -jnp.mean(elbo_terms(q[0], q[1], eps))

    opt = adam(lr, b1, b2, final_lr, steps)
    q0 = (flat / units, jnp.zeros((dim,), flat.dtype))
    loss_grad = jax.value_and_grad(loss)

    def step(carry, key):
        q, state = carry
        value, g = loss_grad(q, key)
        updates, state = opt.update(g, state, q)
        return (optax.apply_updates(q, updates), state), value

    k_fit, k_elbo, k_draw = jax.random.split(key, 3)
    (q, _), losses = jax.lax.scan(step, (q0, opt.init(q0)), jax.random.split(k_fit, steps))
    mu, log_sigma = q
    final = elbo_terms(mu, log_sigma, jax.random.normal(k_elbo, (final_samples, dim), flat.dtype))
    eps = jax.random.normal(k_draw, (draws, dim), flat.dtype)
    params = jax.vmap(
        lambda e: model.from_unconstrained(unravel((mu + jnp.exp(log_sigma) * e) * units))
    )(eps)
    return params, -losses, final, mu * units, jnp.exp(log_sigma) * units


def fit_meanfield(
    fit: MAPResult,
    data: object,
    *,
    steps: int = 2000,
    samples: int = 8,
    learning_rate: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.999),
    final_learning_rate: float | None = 0.005,
    draws: int = 1000,
    seed: int = 0,
) -> Posterior:
    """Mean-field Gaussian q over the unconstrained globals, started at `fit`'s MAP.

    Parameters
    ----------
    fit : a MAP fit (`fit_map`) of the model on `data`: fixes the model, the priors and the
        starting point
    data : (N, D) the data of the fit
    steps, samples : Adam steps; Monte Carlo draws of q per step for the ELBO's gradient
    learning_rate, betas, final_learning_rate : Adam (the rate decays to the final one)
    draws : draws of q returned

    Returns
    -------
    Posterior with params of leading axes (1, draws) drawn from q; ``sampler`` holds ``elbo``
    (steps,) (per-step estimates), ``q_loc`` and ``q_scale`` (P,) (q's parameters,
    unconstrained); diagnostics as for NUTS plus ``elbo`` and ``elbo_se`` (a 4000-draw estimate
    of the final ELBO, a lower bound on log p(x)), and a warning that q is under-dispersed.
    """
    if not isinstance(fit, MAPResult):
        raise SpecError(
            "the mean-field posterior starts from a fitted MAP: call bm.fit_map(x, k) first and "
            f"pass its result (got {type(fit).__name__})"
        )
    x = model_data(data, fit.columns, fit.params.locs.shape[-1])
    steps, *opt = check_optimizer(steps, learning_rate, betas, final_learning_rate)
    whole("samples", samples)
    whole("draws", draws)
    check_seed(seed)
    model = fit.model
    start = off_the_boundary(fit.params, len(x), fit.priors.weights_concentration)
    u_map = model.to_unconstrained(jax.tree.map(jnp.asarray, start))
    padded, n_valid = pad_rows(x)  # small data: one program per bucket of row counts
    out = _meanfield_program(
        u_map,
        padded,
        fit.priors,
        jax.random.key(seed),
        *opt,
        n_valid,
        work=x.size * model.k * samples * steps,  # every step is a pass over the rows
        model=model,
        steps=steps,
        samples=int(samples),
        draws=int(draws),
        final_samples=4000,
    )
    params, elbo, final, mu, sigma = jax.device_get(out)
    params = jax.tree.map(lambda v: np.asarray(v)[None], params)
    if not np.all(np.isfinite(final)) or not all(
        np.all(np.isfinite(v)) for v in jax.tree.leaves(params)
    ):
        raise FitError(
            "the mean-field fit diverged (non-finite ELBO); try a smaller learning_rate or "
            "more samples"
        )
    post = Posterior(
        model,
        params,
        {"elbo": np.asarray(elbo), "q_loc": np.asarray(mu), "q_scale": np.asarray(sigma)},
        columns=fit.columns,
    )
    diagnostics = posterior_diagnostics(post, x)
    diagnostics["elbo"] = float(np.mean(final))
    diagnostics["elbo_se"] = float(np.std(final) / np.sqrt(final.size))
    diagnostics["warnings"] = [
        "Mean-field variational approximation: its intervals are too narrow (it fits inside "
        "one mode and ignores correlations and heavy tails). Use sample_nuts or sample_smc "
        "for calibrated uncertainty."
    ]
    return replace(post, diagnostics=diagnostics)

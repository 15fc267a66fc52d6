"""The M-step of MAP-EM: maximize the expected complete-data log posterior given `Stats`.

Q(globals) = sum_k n_k log w_k + E[log p(x, u | z, globals)] + log p(globals), with the
expectation under the responsibilities (and latent Student-t scales) of the E-step, is a function
of the sufficient statistics alone (`expected_log_joint`). The M-step maximizes it one block of
fields at a time, each block given the others (an ECM step, so the log joint never decreases):

- weights: the Dirichlet MAP w_k = max(n_k + alpha - 1, 0) / sum_j max(n_j + alpha - 1, 0).
  For alpha < 1 a component whose expected count falls to n_k <= 1 - alpha gets weight exactly
  0: the Dirichlet's density is unbounded at that face of the simplex, so emptying it is the
  maximizer (the sparse-Dirichlet pruning of unneeded components). An emptied component stays
  empty (it gets no responsibility), keeps its last locs and scales, and the objective from then
  on is the log joint of the remaining components (`log_joint_alive`).
- locs: given the covariances, the Normal-prior posterior mode (closed form, a D x D solve for
  full / tied covariances).
- scales of diagonal covariances ("shared", "spherical", "diag"): given the locs, each log scale
  t maximizes the concave -(n + 1) t - S e^{-2t} / 2 - (t - a)^2 / (2 b^2) (LogNormal(a, b)
  prior); solved by Newton's method, which converges from any start on this function.
- full / tied covariances (LogNormal scales and an LKJ correlation prior: no closed form) and
  Student-t degrees of freedom: a generalized M-step, damped Newton steps in the unconstrained
  space with a step-size search that never lowers Q.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from .._jit import full_precision
from ..model import Mixture, Params, Priors, covariance_cholesky, tril_inverse
from ..model.spec import bijection
from .estep import Stats

__all__ = ["expected_log_joint", "log_joint_alive", "log_prior_alive", "m_step", "update"]

#: Newton iterations per M-step: 1-D concave scale problems, and the generalized steps.
SCALE_NEWTON_STEPS = 30
GENERAL_NEWTON_STEPS = 8
#: Newton steps stop once a full step's predicted gain falls below this relative to the objective.
NEWTON_TOL = 1e-9
#: A full covariance's generalized M-step takes Newton steps up to this many parameters
#: (D + D (D - 1) / 2: D <= 15), L-BFGS steps (`LBFGS_STEPS`, gradients only) beyond: Newton's
#: Hessian (P gradient passes) and its eigendecomposition (P^3) took ~26 s per EM iteration at
#: D = 50, K = 4 (P = 1,275), and D = 100 did not finish.
NEWTON_MAX_P = 120
#: L-BFGS's steps at most, and its stop: the gradient's norm at most this much of |Q|. At
#: D = 16 (P = 136) 30 steps left EM's result with a gradient norm of 1.7 (Newton's: 1.5e-5),
#: 100 steps 0.1, 300 steps 2.6e-4.
LBFGS_STEPS = 500
LBFGS_GTOL = 1e-10
_STEP_SIZES = np.append(0.5 ** np.arange(12.0), 0.0)


def _scale_loc(params: Params, priors: Priors) -> jnp.ndarray:
    """The LogNormal prior's loc for each scale, as `log_prior` uses it."""
    a = jnp.asarray(priors.scale_loc)
    if jnp.ndim(params.scale) != 2 and params.corr_chol is None:
        return jnp.mean(a)
    return a


def log_prior_alive(params: Params, priors: Priors, alive: jnp.ndarray) -> jnp.ndarray:
    """`log_prior` of the components where alive (K,) is True: the Dirichlet on the simplex of
    the K' alive weights, and the priors of their locs, scales and correlations. Equals
    `bayesmix.model.log_prior` when every component is alive."""
    import numpyro.distributions as dist  # lazy: only tracing needs it (bayesmix._jit)

    k = params.weights.shape[-1]
    a = priors.weights_concentration
    k_alive = jnp.sum(alive)
    lp = gammaln(k_alive * a) - k_alive * gammaln(a)
    lp += jnp.sum(jnp.where(alive, (a - 1) * jnp.log(jnp.where(alive, params.weights, 1.0)), 0))
    per_k = lambda v: jnp.sum(v.reshape(k, -1), axis=-1)  # noqa: E731
    locs = dist.Normal(priors.locs_loc, priors.locs_scale).log_prob(params.locs)
    lp += jnp.sum(jnp.where(alive, per_k(locs), 0.0))
    scale = dist.LogNormal(_scale_loc(params, priors), priors.scale_scale).log_prob(params.scale)
    if jnp.ndim(params.scale) >= 1 and params.scale.shape[0] == k and params.corr_chol is None:
        scale = jnp.where(alive, per_k(scale), 0.0)  # spherical (K,), diag (K, D)
    elif params.corr_chol is not None and params.corr_chol.ndim == 3:
        scale = jnp.where(alive, per_k(scale), 0.0)  # full (K, D)
    lp += jnp.sum(scale)
    if params.corr_chol is not None and params.corr_chol.shape[-1] > 1:
        d = params.corr_chol.shape[-1]
        lkj = dist.LKJCholesky(d, priors.lkj_concentration).log_prob(params.corr_chol)
        lp += jnp.sum(jnp.where(alive, lkj, 0.0)) if lkj.ndim else lkj
    if params.df is not None:
        lp += dist.Gamma(priors.df_shape, priors.df_rate).log_prob(params.df)
    return lp


def log_joint_alive(params: Params, loglik: jnp.ndarray, priors: Priors) -> jnp.ndarray:
    """The EM objective: log likelihood (from `Stats.loglik`) + `log_prior_alive`, the log
    joint of the components with positive weight."""
    return loglik + log_prior_alive(params, priors, params.weights > 0)


def _scatter(st: Stats, locs: jnp.ndarray, c: jnp.ndarray, moment: str) -> jnp.ndarray:
    """Second moments about the locs, sum_n r u (x - locs_k)(x - locs_k)^T, from moments about c."""
    delta = locs - c
    if moment == "diag":
        return jnp.maximum(st.q - 2 * delta * st.s + st.w[:, None] * delta**2, 0.0)
    cross = jnp.einsum("kd,ke->kde", st.s, delta)  # sum_n r u (x - c) delta^T, per component
    shift = st.w[:, None, None] * jnp.einsum("kd,ke->kde", delta, delta)
    if moment == "full":
        return st.q - cross - jnp.swapaxes(cross, 1, 2) + shift
    return st.q - cross.sum(0) - cross.sum(0).T + shift.sum(0)


def _quad_and_logdet(params: Params, scatter: jnp.ndarray, moment: str):
    """(sum_k tr(Sigma_k^-1 S_k) per component (K,), half log det of each Sigma_k (K,))."""
    k, d = params.locs.shape
    if moment == "diag":
        s = jnp.asarray(params.scale)
        var = jnp.broadcast_to((s**2).reshape(s.shape + (1,) * (2 - s.ndim)), (k, d))
        logdet = jnp.broadcast_to(jnp.sum(jnp.log(var), -1) / 2, (k,))
        return jnp.sum(scatter / var, -1), logdet
    chol = covariance_cholesky(params)  # (K, D, D)
    half_logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
    if moment == "tied":
        quad = _quad(tril_inverse(chol[0]), scatter)
        return jnp.zeros((k,)).at[0].set(quad), half_logdet
    return _quad(tril_inverse(chol), scatter), half_logdet


def _quad(white: jnp.ndarray, scatter: jnp.ndarray) -> jnp.ndarray:
    """tr(Sigma^-1 S) = tr(W S W') for W = L^-1 (..., D, D) and S (..., D, D) -> (...)."""
    return jnp.sum((white @ scatter) * white, axis=(-2, -1))


def _df_terms(df: jnp.ndarray, st: Stats) -> jnp.ndarray:
    """The df-dependent part of E[log Gamma(u | df/2, df/2)] summed over rows and components."""
    half = 0.5 * df
    return jnp.sum(st.n) * (half * jnp.log(half) - gammaln(half)) + half * st.t


def expected_log_joint(
    model: Mixture, params: Params, st: Stats, c: jnp.ndarray, priors: Priors
) -> jnp.ndarray:
    """Q(params): the expected complete-data log joint given the E-step statistics `st`
    (computed about the centre c), up to a constant. Its gradient at the parameters of the
    E-step equals the gradient of the log joint (Fisher's identity)."""
    moment = "diag" if model.covariance in ("shared", "spherical", "diag") else model.covariance
    alive = params.weights > 0
    quad, half_logdet = _quad_and_logdet(params, _scatter(st, params.locs, c, moment), moment)
    log_w = jnp.log(jnp.where(alive, params.weights, 1.0))
    q = jnp.sum(st.n * log_w) - jnp.sum(st.n * half_logdet) - 0.5 * jnp.sum(quad)
    if params.df is not None:
        q += _df_terms(params.df, st)
    return q + log_prior_alive(params, priors, alive)


def _maximize(f: Callable, theta: jnp.ndarray, steps: int) -> jnp.ndarray:
    """Damped Newton ascent on f from theta (P,): the step uses the Hessian's eigenvalues in
    absolute value, floored at 1e-4 of the largest (an ascent direction where f is not
    concave), and of the step sizes 1, 1/2, ..., 1/2048 and 0 the best is taken, so f never
    decreases. At most `steps` steps; it stops after a full step whose Newton decrement
    g' |H|^-1 g (twice the gain a full step predicts) was below NEWTON_TOL of |f|: from EM's
    previous M-step, one or two steps reach that (a full covariance at D = 13 took 8, 3.5 ms
    each per component, most of an EM iteration on small data)."""
    sizes = jnp.asarray(_STEP_SIZES, theta.dtype)

    def step(carry):
        theta, i, _ = carry
        g = jax.grad(f)(theta)
        e, v = jnp.linalg.eigh(-jax.hessian(f)(theta))
        e = jnp.maximum(jnp.abs(e), 1e-4 * jnp.max(jnp.abs(e)) + 1e-30)
        direction = v @ ((v.T @ g) / e)
        direction = jnp.where(jnp.all(jnp.isfinite(direction)), direction, 0.0)
        values = jax.vmap(lambda a: f(theta + a * direction))(sizes)
        best = jnp.argmax(jnp.where(jnp.isnan(values), -jnp.inf, values))
        done = g @ direction <= NEWTON_TOL * jnp.abs(values[-1])  # (f(theta): size 0)
        return theta + sizes[best] * direction, i + 1, done

    def more(carry):
        return (carry[1] < steps) & ~carry[2]

    start = (theta, jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    return jax.lax.while_loop(more, step, start)[0]


def _lbfgs_maximize(f: Callable, theta: jnp.ndarray, steps: int) -> jnp.ndarray:
    """L-BFGS ascent on f from theta (P,) (optax's, with its zoom line search), at most `steps`
    steps, until the gradient's norm is below LBFGS_GTOL of |f|; theta itself where that did
    not raise f (so f never decreases)."""
    import optax  # lazy: only tracing needs it (bayesmix._jit)

    def loss(t):
        return -f(t)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry):
        t, state, i, _ = carry
        value, g = value_and_grad(t, state=state)
        updates, state = opt.update(g, state, t, value=value, grad=g, value_fn=loss)
        small = optax.tree_utils.tree_l2_norm(g) <= LBFGS_GTOL * jnp.abs(value)
        return optax.apply_updates(t, updates), state, i + 1, small

    def more(carry):
        return (carry[2] < steps) & ~carry[3]

    start = (theta, opt.init(theta), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    out = jax.lax.while_loop(more, step, start)[0]
    return jnp.where(f(out) >= f(theta), out, theta)  # (False where f(out) is nan)


def _diag_scales(params: Params, scatter: jnp.ndarray, st: Stats, priors: Priors) -> jnp.ndarray:
    """Exact conditional maximizer of the scales of a shared / spherical / diag covariance."""
    k, d = params.locs.shape
    s = jnp.asarray(params.scale)
    if s.ndim == 0:  # one scale: every component and column
        count, ss = d * jnp.sum(st.n), jnp.sum(scatter)
    elif s.ndim == 1:  # one per component
        count, ss = d * st.n, jnp.sum(scatter, -1)
    else:
        count, ss = jnp.broadcast_to(st.n[:, None], (k, d)), scatter
    a, b2 = _scale_loc(params, priors), priors.scale_scale**2
    a = jnp.broadcast_to(a, s.shape)

    def f(t):
        return -(count + 1) * t - 0.5 * ss * jnp.exp(-2 * t) - (t - a) ** 2 / (2 * b2)

    # f's maximizer is the root of ss e^{-2t} = r(t) = count + 1 + (t - a) / b^2, where r > 0:
    # t > t_min. Newton on h(t) = log ss - 2t - log r(t) (convex, decreasing; from left of the
    # root it converges without overshooting), each step kept inside (t_min, inf). Newton on
    # f' itself crept back by 1/2 per step from far left of the root where e^{-2t} rules:
    # a component on repeated values (ss ~ 0) overshot to t ~ -200, came back short, and the
    # M-step kept the old scale, far from the maximum (EM then stopped there, "converged").
    t_min = a - b2 * (count + 1)
    log_ss = jnp.log(jnp.where(ss > 0, ss, 1.0))

    def newton(t, _):
        r = (count + 1) + (t - a) / b2
        t_new = t + (log_ss - 2 * t - jnp.log(r)) / (2 + 1 / (b2 * r))
        return jnp.where(t_new > t_min, t_new, 0.5 * (t_min + t)), None

    t0 = jnp.log(s)
    start = jnp.where(t0 > t_min, t0, t_min + 1)
    # Unrolled: one fused elementwise program (a GPU syncs with the host per loop step).
    t = jax.lax.scan(newton, start, None, length=SCALE_NEWTON_STEPS, unroll=True)[0]
    t = jnp.where(ss > 0, t, t_min)  # ss = 0: f is a parabola, its top at t_min
    return jnp.exp(jnp.where(f(t) >= f(t0), t, t0))


def _full_covariance(
    scale: jnp.ndarray,
    corr_chol: jnp.ndarray,
    scatter: jnp.ndarray,
    count: jnp.ndarray,
    priors: Priors,
    newton_steps: int = GENERAL_NEWTON_STEPS,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Generalized M-step for one full covariance diag(s) C C^T diag(s): scale s (D,),
    corr_chol C (D, D), scatter (D, D), count (): `newton_steps` Newton steps on (log s, C
    unconstrained), or L-BFGS steps above NEWTON_MAX_P parameters."""
    import numpyro.distributions as dist  # lazy: only tracing needs it (bayesmix._jit)

    d = scatter.shape[-1]
    a = jnp.broadcast_to(jnp.asarray(priors.scale_loc), (d,))
    lkj = dist.LKJCholesky(d, priors.lkj_concentration) if d > 1 else None

    def unpack(theta):
        return jnp.exp(theta[:d]), bijection("corr_chol")(theta[d:])

    def q(theta):
        s, corr = unpack(theta)
        chol = s[:, None] * corr
        half_logdet = jnp.sum(jnp.log(jnp.diagonal(chol)))
        quad = _quad(tril_inverse(chol), scatter)
        lp = dist.LogNormal(a, priors.scale_scale).log_prob(s).sum()
        if lkj is not None:
            lp += lkj.log_prob(corr)
        return -count * half_logdet - 0.5 * quad + lp

    theta0 = jnp.concatenate([jnp.log(scale), bijection("corr_chol").inv(corr_chol)])
    if theta0.size <= NEWTON_MAX_P:
        return unpack(_maximize(q, theta0, newton_steps))
    return unpack(_lbfgs_maximize(q, theta0, LBFGS_STEPS))


def _df(df: jnp.ndarray, st: Stats, priors: Priors) -> jnp.ndarray:
    """Generalized M-step for the Student-t degrees of freedom: Newton on log df."""
    import numpyro.distributions as dist  # lazy: only tracing needs it (bayesmix._jit)

    def q(theta):
        nu = jnp.exp(theta[0])
        return _df_terms(nu, st) + dist.Gamma(priors.df_shape, priors.df_rate).log_prob(nu)

    return jnp.exp(_maximize(q, jnp.log(df)[None], SCALE_NEWTON_STEPS)[0])


def m_step(
    model: Mixture,
    params: Params,
    st: Stats,
    c: jnp.ndarray,
    priors: Priors,
    newton_steps: int = GENERAL_NEWTON_STEPS,
) -> Params:
    """One ECM update of every free field given the E-step statistics `st` about centre c
    (`newton_steps` for a full or tied covariance: any number raises the objective)."""
    k, d = params.locs.shape
    moment = "diag" if model.covariance in ("shared", "spherical", "diag") else model.covariance
    alive = params.weights > 0
    mass = jnp.where(alive, jnp.maximum(st.n + priors.weights_concentration - 1, 0.0), 0.0)
    weights = mass / jnp.sum(mass)

    # locs | covariances: (w Sigma^-1 + T^-1)(mu - c) = Sigma^-1 s + T^-1 (m - c), T = diag(tau^2)
    tau2 = jnp.broadcast_to(jnp.asarray(priors.locs_scale) ** 2, (d,))
    m_c = jnp.broadcast_to(jnp.asarray(priors.locs_loc), (d,)) - c
    if moment == "diag":
        s = jnp.asarray(params.scale)
        var = jnp.broadcast_to((s**2).reshape(s.shape + (1,) * (2 - s.ndim)), (k, d))
        delta = (st.s / var + m_c / tau2) / (st.w[:, None] / var + 1 / tau2)
    else:
        chol = covariance_cholesky(params)
        sigma = chol @ jnp.swapaxes(chol, -1, -2)  # (K, D, D)
        lhs = st.w[:, None, None] * jnp.eye(d) + sigma / tau2
        rhs = st.s + jnp.einsum("kde,e->kd", sigma, m_c / tau2)
        delta = jnp.linalg.solve(lhs, rhs[..., None])[..., 0]
    locs = jnp.where(alive[:, None], c + delta, params.locs)
    params = params._replace(weights=weights, locs=locs)

    # covariances | locs
    scatter = _scatter(st, locs, c, moment)
    if moment == "diag":
        scale = _diag_scales(params, scatter, st, priors)
        if scale.ndim >= 1:
            keep = alive.reshape((k,) + (1,) * (scale.ndim - 1))
            scale = jnp.where(keep, scale, params.scale)
        params = params._replace(scale=scale)
    elif moment == "full":
        # One component after another (lax.map), not vmapped: the vmapped Newton solves hung
        # XLA's CPU runtime (every thread waiting, no CPU used) from D = 10, K = 8 on, when
        # they were LAPACK's (jaxlib 0.10's batched kernels deadlock side by side, see
        # `model.components`); they are `tril_inverse`'s products now.
        scale, corr = jax.lax.map(
            lambda a: _full_covariance(*a, priors, newton_steps),
            (params.scale, params.corr_chol, scatter, st.n),
        )
        scale = jnp.where(alive[:, None], scale, params.scale)
        corr = jnp.where(alive[:, None, None], corr, params.corr_chol)
        params = params._replace(scale=scale, corr_chol=corr)
    else:
        scale, corr = _full_covariance(
            params.scale, params.corr_chol, scatter, jnp.sum(st.n), priors, newton_steps
        )
        params = params._replace(scale=scale, corr_chol=corr)
    if model.family == "student-t" and model.df is None:
        params = params._replace(df=_df(params.df, st, priors))
    return params


@partial(jax.jit, static_argnames=("model",))
@full_precision
def update(
    model: Mixture,
    params: Params,
    st: Stats,
    c: jnp.ndarray,
    priors: Priors,
    newton_steps: int = GENERAL_NEWTON_STEPS,
):
    """(the EM objective at `params`, the parameters after one M-step, the norm of each
    field's change) for E-step statistics `st` computed at `params` about centre c.
    newton_steps (a value: one program for any) caps the M-step's Newton steps."""
    objective = log_joint_alive(params, st.loglik, priors)
    new = m_step(model, params, st, c, priors, newton_steps)
    change = jax.tree.map(lambda a, b: jnp.sqrt(jnp.sum((a - b) ** 2)), new, params)
    return objective, new, change

"""Label switching: relabeling posterior draws so that component j means the same in every draw.

A mixture's posterior is invariant under permuting the components (the priors are
exchangeable), so raw draws mix K! labellings. Two relabelings:

- ``"stephens"``: Stephens' (2000) KL algorithm. Each draw s has membership probabilities
  P_s (N, K); alternately set Q = mean_s P_s[:, nu_s] and choose for every draw the permutation
  nu_s minimizing KL(Q || P_s[:, nu_s]) (an assignment problem), until no permutation changes.
  Label-invariant in the data's terms: component j is "the cluster these points belong to".
- ``"order"``: the ordering constraint, components sorted by one loc coordinate in every draw.
  Needs no data; misleading when two components share that coordinate.

A permutation array ``perms`` (..., K) says: component j of the relabeled draw is component
``perms[..., j]`` of the raw draw. The random permutation sampler (``random_permutation``)
instead permutes every draw uniformly at random: valid for the symmetric posterior, and the
way to estimate label-symmetric functionals such as E[locs[0]] from chains that rarely switch.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._jit import sized_jit
from .data import model_data
from .enumerate import log_responsibilities
from .errors import SpecError
from .infer.problem import check_seed
from .model import Mixture, Params
from .result import Posterior, as_posterior

__all__ = [
    "METHODS",
    "draw_log_responsibilities",
    "order_permutations",
    "permute",
    "random_permutation",
    "relabel",
    "stephens",
    "stephens_permutations",
]

METHODS = ("stephens", "order")
# Points used by Stephens' algorithm (a fixed random subset beyond this): labels are fixed by
# a few hundred points, and the (draws, points, K) array stays small.
MAX_POINTS = 1000


@partial(sized_jit, static_argnames=("batch",))
def _log_resp_draws(params: Params, x: jnp.ndarray, batch: int) -> jnp.ndarray:
    floor = jnp.log(jnp.finfo(x.dtype).tiny)
    return jax.lax.map(
        lambda p: jnp.maximum(log_responsibilities(p, x), floor), params, batch_size=batch
    )


def draw_log_responsibilities(params: Params, x: np.ndarray) -> np.ndarray:
    """log p(z_n = k | x_n, globals of draw s) for every draw: params with one leading draw
    axis (S, ...) and x (N, D) -> (S, N, K), floored at log(smallest float) so that it is
    finite."""
    p = jax.tree.map(np.asarray, params)
    s, n, k = p.locs.shape[0], x.shape[0], p.locs.shape[1]
    batch = int(max(1, min(s, 2**22 // max(1, n * k))))
    return np.asarray(_log_resp_draws(p, np.asarray(x), work=s * n * k, batch=batch))


def order_permutations(locs: np.ndarray, coordinate: int = 0) -> np.ndarray:
    """The ordering constraint: perms (..., K) sorting each draw's locs (..., K, D) by the
    given coordinate."""
    d = locs.shape[-1]
    if not -d <= coordinate < d:
        raise SpecError(f"coordinate {coordinate} does not exist: the locs have {d} coordinates")
    return np.argsort(locs[..., coordinate], axis=-1, kind="stable")


def permute(params: Params, perms: np.ndarray, model: Mixture) -> Params:
    """Reorder every component field of `params` by `perms` (..., K), whose leading axes are
    the params' batch axes (e.g. (chains, draws))."""
    batch = perms.ndim - 1
    out = {}
    for name in Params._fields:
        v = getattr(params, name)
        if v is not None and name in model.component_fields:
            v = np.asarray(v)
            idx = perms.reshape(perms.shape + (1,) * (v.ndim - perms.ndim))
            v = np.take_along_axis(v, idx, axis=batch)
        out[name] = v
    return Params(**out)


def _best_permutations(gain: np.ndarray) -> np.ndarray:
    """argmax over permutations nu of sum_j gain[s, j, nu(j)]: (S, K, K) -> (S, K)."""
    s, k, _ = gain.shape
    if k <= 5:  # 5! = 120 permutations: one vectorized pass
        table = np.array(list(itertools.permutations(range(k))))  # (P, K)
        scores = gain[:, np.arange(k), table].sum(-1)  # (S, P)
        return table[np.argmax(scores, axis=1)]
    from scipy.optimize import linear_sum_assignment

    return np.stack([linear_sum_assignment(-g)[1] for g in gain])


def stephens(
    log_probs: np.ndarray, init: np.ndarray | None = None, max_iter: int = 100
) -> tuple[np.ndarray, int, bool]:
    """Stephens' KL relabeling.

    Parameters
    ----------
    log_probs : (S, N, K) log membership probabilities of every draw (finite)
    init : (S, K) starting permutations (default: identity)
    max_iter : iterations at most

    Returns
    -------
    (perms (S, K), iterations, converged): component j of relabeled draw s is component
    perms[s, j] of the raw draw; converged is True when an iteration changed no permutation
    (the KL objective only decreases, so the algorithm stops at a local optimum).
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    s, _, k = log_probs.shape
    perms = np.tile(np.arange(k), (s, 1)) if init is None else np.array(init)
    probs = np.exp(log_probs)
    rows = np.arange(s)[:, None]
    for it in range(1, max_iter + 1):
        q = probs[rows, :, perms].mean(axis=0).T  # (N, K): permuted probs averaged over draws
        gain = np.einsum("nj,snl->sjl", q, log_probs)  # sum_n Q_nj log P_snl
        new = _best_permutations(gain)
        if np.array_equal(new, perms):
            return perms, it, True
        perms = new
    return perms, max_iter, False


def _flat(params: Params) -> Params:
    """(chains, draws, ...) -> (chains * draws, ...)."""
    return jax.tree.map(lambda v: np.reshape(v, (-1,) + np.shape(v)[2:]), params)


def stephens_permutations(
    post: Posterior,
    data: object,
    *,
    max_points: int = MAX_POINTS,
    max_iter: int = 100,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """Stephens' permutations (chains, draws, K) of a posterior's draws on `data` (N, D),
    started from the ordering by the first loc coordinate; and a JSON-ready record of the run.
    Uses a fixed random subset of `max_points` rows when N is larger."""
    post = as_posterior(post)
    x = model_data(data, post.columns, post.params.locs.shape[-1])
    if x.shape[0] > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False))
        x = x[rows]
    flat = _flat(post.params)
    init = order_permutations(flat.locs)
    logp = draw_log_responsibilities(flat, x)
    perms, iterations, converged = stephens(logp, init, max_iter)
    shape = post.params.locs.shape[:2] + (post.model.k,)
    record = {"method": "stephens", "iterations": iterations, "converged": converged}
    record["points"] = int(x.shape[0])
    return perms.reshape(shape), record


def relabel(
    post: Posterior,
    data: object = None,
    *,
    method: str = "stephens",
    coordinate: int = 0,
    max_points: int = MAX_POINTS,
    max_iter: int = 100,
    seed: int = 0,
) -> Posterior:
    """The posterior with consistently labelled draws.

    Parameters
    ----------
    post : draws with leading axes (chains, draws)
    data : (N, D) the data the posterior was fitted on (needed by "stephens")
    method : "stephens" (KL algorithm on the membership probabilities, started from the
        ordering) or "order" (sorted by locs[..., coordinate])
    max_points, max_iter, seed : Stephens' settings (see `stephens_permutations`)

    Returns
    -------
    A Posterior with the same sampler statistics, permuted params and diagnostics computed on
    them; ``diagnostics["relabeling"]`` records the method, iterations, convergence and the
    fraction of draws whose labels changed.
    """
    from .result import posterior_diagnostics

    post = as_posterior(post)
    if method not in METHODS:
        raise SpecError(f"unknown relabeling method {method!r}; choose one of {METHODS}")
    if method == "stephens":
        if data is None:
            raise SpecError(
                "Stephens' relabeling needs the data the posterior was fitted on: "
                "relabel(post, x), or method='order' to sort by a loc coordinate instead"
            )
        perms, record = stephens_permutations(
            post, data, max_points=max_points, max_iter=max_iter, seed=seed
        )
    else:
        perms = order_permutations(post.params.locs, coordinate)
        record = {"method": "order", "coordinate": int(coordinate)}
    record["relabeled_fraction"] = float(np.mean(np.any(perms != np.arange(post.model.k), -1)))
    new = replace(post, params=permute(post.params, perms, post.model), diagnostics={})
    diagnostics = posterior_diagnostics(new, relabel=None)
    diagnostics["relabeling"] = record
    return replace(new, diagnostics=diagnostics)


def random_permutation(post: Posterior, seed: int = 0) -> Posterior:
    """Every draw's labels permuted uniformly at random (the random permutation sampler,
    Frühwirth-Schnatter 2001). The posterior is invariant under relabeling, so the result is
    still a valid sample of it, now visiting every labelling equally: use it to estimate
    label-symmetric functionals (E[locs[0]], the predictive of 'component 0', ...). Sampler
    statistics and diagnostics are kept."""
    post = as_posterior(post)
    seed = check_seed(seed)
    shape = post.params.locs.shape[:2] + (post.model.k,)
    perms = np.argsort(np.random.default_rng(seed).random(shape), axis=-1)
    return replace(post, params=permute(post.params, perms, post.model))

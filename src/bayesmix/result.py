"""Fitted results: plain NumPy containers with their diagnostics and a JSON-ready view.

Every array here is a NumPy array (already moved off the device); nothing in this module
computes anything heavy except the posterior diagnostics, which ArviZ provides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model import Mixture, Params, Priors

__all__ = ["LocalPosterior", "MAPResult", "Posterior", "posterior_diagnostics"]


@dataclass(frozen=True)
class MAPResult:
    """A MAP fit of `model`: params (see `bayesmix.model.params` for shapes), the negative log
    joint and the log likelihood at the MAP, and the loss and gradient norms per step."""

    model: Mixture
    params: Params
    priors: Priors
    neg_log_joint: float
    log_likelihood: float
    init_losses: np.ndarray
    best_init: int
    losses: np.ndarray
    grad_norms: dict[str, np.ndarray]
    final_grad_norm: float
    converged: bool

    @property
    def k(self) -> int:
        return self.model.k

    @property
    def initial_loss(self) -> float:
        """The loss of the chosen (best) initialization."""
        return float(self.init_losses[self.best_init])

    def to_dict(self) -> dict:
        return {
            "model": self.model.describe(),
            **_params_dict(self.params),
            "neg_log_joint": self.neg_log_joint,
            "log_likelihood": self.log_likelihood,
            "converged": self.converged,
            "final_grad_norm": self.final_grad_norm,
        }


@dataclass(frozen=True)
class LocalPosterior:
    """q(z_n) learned by the enumerating guide. probs: (N, K), rows sum to one."""

    probs: np.ndarray
    losses: np.ndarray
    grad_norms: dict[str, np.ndarray]


@dataclass(frozen=True)
class Posterior:
    """Draws of the globals of `model` from collapsed NUTS.

    params: Params whose every field has two leading axes (chains, draws), e.g. weights
    (chains, draws, K), locs (chains, draws, K, D). `sampler` holds per-draw sampler
    statistics, each (chains, draws): diverging, acceptance_rate, num_steps, energy.
    `diagnostics` comes from `posterior_diagnostics`.
    """

    model: Mixture
    params: Params
    sampler: dict[str, np.ndarray]
    diagnostics: dict = field(default_factory=dict)

    @property
    def num_chains(self) -> int:
        return int(self.params.locs.shape[0])

    @property
    def num_draws(self) -> int:
        return int(self.params.locs.shape[1])

    def sorted_by_loc(self) -> Params:
        """Label-invariant view: every component field reordered so that the components are
        sorted by the first loc coordinate in every draw (the ordering-constraint relabeling)."""
        order = np.argsort(self.params.locs[..., 0], axis=-1)  # (chains, draws, K)
        out = {}
        for name in Params._fields:
            v = getattr(self.params, name)
            if v is not None and name in self.model.component_fields:
                idx = order.reshape(order.shape + (1,) * (v.ndim - 3))
                v = np.take_along_axis(v, idx, axis=2)
            out[name] = v
        return Params(**out)

    def to_dict(self) -> dict:
        return {**_params_dict(self.params), "diagnostics": self.diagnostics}


def _params_dict(params: Params) -> dict:
    return {name: np.asarray(v).tolist() for name, v in params._asdict().items() if v is not None}


def _quantities(p: Params) -> dict[str, np.ndarray]:
    """Scalar draws (chains, draws) of every parameter element, named like "locs[1,0]";
    correlations as the lower triangle of C C^T."""
    out = {}
    for name, v in p._asdict().items():
        if v is None:
            continue
        if name == "corr_chol":
            v = np.einsum("...ij,...kj->...ik", v, v)
            lower = np.tril_indices(v.shape[-1], -1)
            v = v[..., lower[0], lower[1]]
            name = "corr"
        for idx in np.ndindex(*v.shape[2:]):
            label = f"{name}[{','.join(map(str, idx))}]" if idx else name
            out[label] = v[(slice(None), slice(None), *idx)]
    return out


def posterior_diagnostics(post: Posterior) -> dict:
    """R-hat, bulk/tail ESS (ArviZ) of label-invariant quantities, divergences, warnings.

    Quantities: every parameter element after ordering the components by their first loc
    coordinate. Returns a JSON-ready dict with a list of plain-words `warnings`.
    """
    import arviz as az  # imported here: it is slow to import and only needed for draws

    chains, draws = post.num_chains, post.num_draws
    table = {}
    for name, v in _quantities(post.sorted_by_loc()).items():
        row = {"mean": float(v.mean()), "sd": float(v.std()), "median": float(np.median(v))}
        row["q5"], row["q95"] = (float(q) for q in np.quantile(v, [0.05, 0.95]))
        row["ess_bulk"] = float(az.ess(v, method="bulk"))
        row["ess_tail"] = float(az.ess(v, method="tail"))
        row["r_hat"] = float(az.rhat(v)) if chains > 1 else None
        table[name] = row
    divergences = int(post.sampler["diverging"].sum())
    warnings = []
    worst = max(table, key=lambda n: table[n]["r_hat"] or 0.0)
    if chains > 1 and table[worst]["r_hat"] > 1.01:
        warnings.append(
            f"The {chains} chains disagree (R-hat of {worst} is {table[worst]['r_hat']:.3f}, "
            "above 1.01): the chains have not converged to one posterior and the summary "
            "is not trustworthy. Run longer chains (more warm-up and draws)."
        )
    if chains == 1:
        warnings.append(
            "Only one chain was run, so convergence cannot be checked (R-hat needs several "
            "chains); a single chain of a mixture often stays in one mode. Use 4 chains."
        )
    low = min(table, key=lambda n: table[n]["ess_bulk"])
    if table[low]["ess_bulk"] < 100 * chains:
        warnings.append(
            f"Few effective draws: the effective sample size of {low} is "
            f"{table[low]['ess_bulk']:.0f} (fewer than 100 per chain), so posterior means "
            "and intervals are imprecise. Run more draws."
        )
    if divergences:
        warnings.append(
            f"{divergences} of {chains * draws} transitions diverged: the sampler could not "
            "follow the posterior's curvature and the draws may be biased. Increase the "
            "target acceptance rate or the warm-up."
        )
    return {
        "summary": table,
        "divergences": divergences,
        "chains": chains,
        "draws": draws,
        "mean_acceptance_rate": float(post.sampler["acceptance_rate"].mean()),
        "warnings": warnings,
    }

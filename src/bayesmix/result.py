"""Fitted results: plain NumPy containers with their diagnostics and a JSON-ready view.

Every array here is a NumPy array (already moved off the device); nothing in this module
computes anything heavy except the posterior diagnostics, which ArviZ provides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model import Params, Priors

__all__ = ["LocalPosterior", "MAPResult", "Posterior", "posterior_diagnostics"]


@dataclass(frozen=True)
class MAPResult:
    """A MAP fit. params: weights (K,), locs (K, D), scale (); losses and grad norms per step."""

    params: Params
    priors: Priors
    neg_log_joint: float
    init_losses: np.ndarray
    best_init: int
    losses: np.ndarray
    grad_norms: dict[str, np.ndarray]
    final_grad_norm: float
    converged: bool

    @property
    def k(self) -> int:
        return int(self.params.weights.shape[0])

    @property
    def initial_loss(self) -> float:
        """The loss of the chosen (best) initialization."""
        return float(self.init_losses[self.best_init])

    def to_dict(self) -> dict:
        p = self.params
        return {
            "weights": p.weights.tolist(),
            "locs": p.locs.tolist(),
            "scale": float(p.scale),
            "neg_log_joint": self.neg_log_joint,
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
    """Draws of the globals from collapsed NUTS.

    weights: (chains, draws, K); locs: (chains, draws, K, D); scale: (chains, draws).
    `sampler` holds per-draw sampler statistics, each (chains, draws): diverging,
    acceptance_rate, num_steps, energy. `diagnostics` comes from `posterior_diagnostics`.
    """

    weights: np.ndarray
    locs: np.ndarray
    scale: np.ndarray
    sampler: dict[str, np.ndarray]
    diagnostics: dict = field(default_factory=dict)

    @property
    def num_chains(self) -> int:
        return int(self.scale.shape[0])

    def sorted_by_loc(self) -> tuple[np.ndarray, np.ndarray]:
        """Label-invariant view: (weights, locs) with components ordered by the first loc
        coordinate in every draw (the ordering-constraint relabeling)."""
        order = np.argsort(self.locs[..., 0], axis=-1)
        w = np.take_along_axis(self.weights, order, axis=-1)
        locs = np.take_along_axis(self.locs, order[..., None], axis=-2)
        return w, locs

    def to_dict(self) -> dict:
        return {
            "weights": self.weights.tolist(),
            "locs": self.locs.tolist(),
            "scale": self.scale.tolist(),
            "diagnostics": self.diagnostics,
        }


def posterior_diagnostics(post: Posterior) -> dict:
    """R-hat, bulk/tail ESS (ArviZ) of label-invariant quantities, divergences, warnings.

    Quantities: the scale and, after ordering components by their first loc coordinate,
    each weight and loc. Returns a JSON-ready dict with a list of plain-words `warnings`.
    """
    import arviz as az  # imported here: it is slow to import and only needed for draws

    w, locs = post.sorted_by_loc()
    k, d = locs.shape[-2:]
    quantities = {"scale": post.scale}
    for j in range(k):
        quantities[f"weights[{j}]"] = w[..., j]
        for c in range(d):
            quantities[f"locs[{j},{c}]"] = locs[..., j, c]
    chains, draws = post.scale.shape
    table = {}
    for name, v in quantities.items():
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

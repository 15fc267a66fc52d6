"""Fitted results: plain NumPy containers with their diagnostics and a JSON-ready view.

Every array here is a NumPy array (already moved off the device); nothing in this module
computes anything heavy except the posterior diagnostics (R-hat and ESS: `convergence`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .convergence import ess_bulk, ess_tail, rhat
from .errors import SpecError
from .model import Mixture, Params, Priors

__all__ = [
    "LocalPosterior",
    "MAPResult",
    "Posterior",
    "as_fit",
    "as_posterior",
    "ebfmi",
    "posterior_diagnostics",
    "relabeled_params",
]


@dataclass(frozen=True)
class MAPResult:
    """A MAP fit of `model`: params (see `bayesmix.model.params` for shapes), the negative log
    joint and the log likelihood at the MAP, and the loss and gradient norms per step.
    `columns`: the names of the data's columns where it had them (a DataFrame, files): data
    frames given to predict and the other functions of a fit are read by these names."""

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
    columns: tuple[str, ...] | None = None

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


def as_fit(fit: object) -> MAPResult:
    """The MAP fit in `fit`: a MAPResult (`fit_em`, `fit_map`), a model read by `load`, or a
    fitted `BayesianMixture`; else SpecError naming what was given."""
    for inner in (fit, getattr(fit, "fit", None), getattr(fit, "result_", None)):
        if isinstance(inner, MAPResult):
            return inner
    name = type(fit).__name__
    if name == "BayesianMixture":
        raise SpecError("the BayesianMixture is not fitted yet; call .fit(X) first")
    hint = "; a Posterior's draws classify with bm.membership" if name == "Posterior" else ""
    raise SpecError(
        "expected a MAP fit (from fit_em or fit_map), a model read by bm.load or a fitted "
        f"BayesianMixture, got {name}{hint}"
    )


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
    `diagnostics` comes from `posterior_diagnostics`. `columns`: as `MAPResult.columns`.
    """

    model: Mixture
    params: Params
    sampler: dict[str, np.ndarray]
    diagnostics: dict = field(default_factory=dict)
    columns: tuple[str, ...] | None = None

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


#: E-BFMI below this suggests the momentum resampling cannot explore the energy distribution
#: (Betancourt 2016).
EBFMI_THRESHOLD = 0.3
#: NUTS's limit on a trajectory's doublings (Stan's and BlackJAX's default): a draw whose tree
#: reached it took 2^MAX_TREE_DEPTH - 1 leapfrog steps without making a U-turn.
MAX_TREE_DEPTH = 10
RHAT_THRESHOLD = 1.01
#: A chain whose median of a scale is below this fraction of the other chains' (the median of
#: their medians) is taken for a component collapsing onto a few rows.
COLLAPSE_RATIO = 0.1


def ebfmi(energy: np.ndarray) -> np.ndarray:
    """Energy Bayesian fraction of missing information per chain: (chains, draws) -> (chains,).

    E-BFMI = sum_t (E_t - E_{t-1})^2 / sum_t (E_t - mean E)^2; NaN for a chain of < 2 draws or
    constant energy."""
    e = np.asarray(energy, dtype=np.float64)
    num = np.sum(np.diff(e, axis=1) ** 2, axis=1)
    den = np.sum((e - e.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def as_posterior(post: object) -> Posterior:
    """The posterior draws in `post`: a Posterior (`sample_nuts`, `sample_smc`, ...) or a model
    read by `load` that holds them; else SpecError. Refuses a posterior without draws."""
    inner = post if isinstance(post, Posterior) else getattr(post, "posterior", post)
    if not isinstance(inner, Posterior):
        if type(post).__name__ == "SavedModel":
            raise SpecError(
                "the model was saved without posterior draws; save it with "
                "bm.save(path, fit, posterior) (bayesmix fit without --no-posterior)"
            )
        raise SpecError(
            f"expected a Posterior (from sample_nuts or sample_smc), got {type(post).__name__}"
        )
    if inner.num_chains * inner.num_draws == 0:
        raise SpecError("the posterior has no draws; sample with draws >= 1")
    return inner


def relabeled_params(
    post: Posterior, data: object, relabel: str | None
) -> tuple[Params, dict | None]:
    """The draws' params relabeled as `relabel` asks ("auto": Stephens' KL relabeling with
    `data`, else the ordering by the first loc coordinate; None: as they are), and a
    JSON-ready record of the relabeling (None when none was done)."""
    if relabel is None:
        return post.params, None
    if relabel == "auto":
        relabel = "stephens" if data is not None else "order"
    if relabel == "order":
        return post.sorted_by_loc(), {"method": "order", "coordinate": 0}
    from .relabel import permute, stephens_permutations

    if relabel != "stephens":
        raise SpecError(
            f"unknown relabeling {relabel!r}; choose 'auto', 'stephens', 'order' or None"
        )
    if data is None:
        raise SpecError("Stephens' relabeling needs the data: pass data=x, or relabel='order'")
    perms, record = stephens_permutations(post, data)
    record["relabeled_fraction"] = float(np.mean(np.any(perms != np.arange(post.model.k), -1)))
    return permute(post.params, perms, post.model), record


def _collapsed_scale(draws_of: dict, table: dict) -> tuple[str, int, float, float] | None:
    """(quantity, chain, its median there, the other chains' median) for the scale quantity
    whose chains disagree (R-hat in `posterior_diagnostics`' table) and one chain's median is
    below COLLAPSE_RATIO of the others' the most; None if none is. draws_of: {name: (chains,
    draws)}."""
    found, lowest = None, COLLAPSE_RATIO
    for name, row in table.items():
        if not name.startswith("scale") or (row["r_hat"] or 0.0) <= RHAT_THRESHOLD:
            continue
        medians = np.median(draws_of[name], axis=1)
        c = int(np.argmin(medians))
        others = float(np.median(np.delete(medians, c)))
        if medians[c] < lowest * others:
            found, lowest = (name, c, float(medians[c]), others), medians[c] / others
    return found


def posterior_diagnostics(
    post: Posterior, data: object = None, *, relabel: str | None = "auto"
) -> dict:
    """R-hat, bulk/tail ESS (as ArviZ's), per-chain means, divergences, E-BFMI and warnings.

    Parameters
    ----------
    post : draws with leading axes (chains, draws)
    data : (N, D) the data the posterior was fitted on, or None
    relabel : how the draws are labelled before summarizing: "auto" (Stephens' KL relabeling
        when `data` is given, else the ordering by the first loc coordinate), "stephens",
        "order", or None (the draws as they are, e.g. already relabeled)

    Returns
    -------
    JSON-ready dict: ``summary`` {quantity: mean, sd, median, q5, q95, ess_bulk, ess_tail,
    r_hat, chain_means}, ``divergences``, ``ebfmi`` (per chain), ``relabeling``, ``chains``,
    ``draws`` and plain-words ``warnings``.
    """
    chains, draws = post.num_chains, post.num_draws
    if chains * draws == 0:
        raise SpecError("the posterior has no draws; sample with draws >= 1")
    params, relabeling = relabeled_params(post, data, relabel)
    table, draws_of = {}, _quantities(params)
    for name, v in draws_of.items():
        row = {"mean": float(v.mean()), "sd": float(v.std()), "median": float(np.median(v))}
        row["q5"], row["q95"] = (float(q) for q in np.quantile(v, [0.05, 0.95]))
        constant = bool(np.ptp(v) == 0)  # e.g. the weight of a 1-component model
        row["ess_bulk"] = None if constant else ess_bulk(v)
        row["ess_tail"] = None if constant else ess_tail(v)
        row["r_hat"] = rhat(v) if chains > 1 and not constant else None
        row["chain_means"] = [float(m) for m in v.mean(axis=1)]
        table[name] = row
    sampler = post.sampler
    divergences = int(np.sum(sampler["diverging"])) if "diverging" in sampler else 0
    bfmi = ebfmi(sampler["energy"]) if "energy" in sampler and draws > 1 else None
    warnings = []
    worst = max(table, key=lambda n: table[n]["r_hat"] or 0.0)
    if chains > 1 and (table[worst]["r_hat"] or 0.0) > RHAT_THRESHOLD:
        means = ", ".join(f"{m:.3g}" for m in table[worst]["chain_means"])
        warnings.append(
            f"The {chains} chains disagree (R-hat of {worst} is {table[worst]['r_hat']:.3f}, "
            f"above {RHAT_THRESHOLD}; its mean per chain: {means}): the chains have not "
            "converged to one posterior, or sit in different modes, and the pooled summary "
            "is not trustworthy. Run longer chains (more warm-up and draws), start them from "
            "distinct MAP restarts (sample_multistart) or use tempered SMC (sample_smc)."
        )
    collapsed = _collapsed_scale(draws_of, table)  # (R-hat: never for one chain)
    if collapsed is not None:
        name, c, own, others = collapsed
        warnings.append(
            f"In chain {c}, {name} is {own:.3g} against {others:.3g} in the other chains "
            "(medians): a component collapsing onto a few rows, a spike of the likelihood that "
            "the scales' prior allows. Tighten that prior (e.g. Priors.from_data(x, "
            "scale_scale=0.5)) or fit a simpler covariance or fewer components."
        )
    if chains == 1:
        warnings.append(
            "Only one chain was run, so convergence cannot be checked (R-hat needs several "
            "chains); a single chain of a mixture often stays in one mode. Use 4 chains."
        )
    low = min(table, key=lambda n: table[n]["ess_bulk"] or np.inf)
    if (table[low]["ess_bulk"] or np.inf) < 100 * chains:
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
    steps = np.asarray(sampler.get("num_steps", 0))
    capped = int(np.sum(steps >= 2**MAX_TREE_DEPTH - 1))
    if capped:
        warnings.append(
            f"{capped} of {chains * draws} transitions hit NUTS's maximum tree depth "
            f"({MAX_TREE_DEPTH} doublings, {2**MAX_TREE_DEPTH - 1} leapfrog steps, each a pass "
            "over the rows): the posterior is poorly conditioned for the sampler (parameters "
            "strongly correlated or of very different scales, e.g. full covariances of nearly "
            "collinear columns, or a component with few rows), so it runs slowly and may "
            "explore too little. Try dense_mass=True (bayesmix fit --dense-mass), fewer "
            "components or a simpler covariance structure."
        )
    if bfmi is not None and np.any(bfmi < EBFMI_THRESHOLD):
        bad = [c for c in range(chains) if bfmi[c] < EBFMI_THRESHOLD]
        warnings.append(
            f"Low E-BFMI in chain(s) {bad} ({', '.join(f'{bfmi[c]:.2f}' for c in bad)}, below "
            f"{EBFMI_THRESHOLD}): the sampler explores the posterior's energy poorly (often "
            "heavy tails, e.g. of the scale). Run longer chains or use tighter priors."
        )
    out = {
        "summary": table,
        "divergences": divergences,
        "ebfmi": None if bfmi is None else [None if np.isnan(b) else float(b) for b in bfmi],
        "relabeling": relabeling,
        "chains": chains,
        "draws": draws,
        "warnings": warnings,
    }
    if "acceptance_rate" in sampler:
        out["mean_acceptance_rate"] = float(np.mean(sampler["acceptance_rate"]))
    return out

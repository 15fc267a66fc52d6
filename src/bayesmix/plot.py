"""The seed tutorial's figures, one function each, returning a matplotlib `Figure`.

Figures are built with `matplotlib.figure.Figure` (no pyplot global state), so they can be made
from threads and servers. The 1-D figures (density, assignments over a grid) need D == 1.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .errors import SpecError
from .model import component_log_prob, covariance_cholesky
from .result import (
    LocalPosterior,
    MAPResult,
    Posterior,
    _quantities,
    as_fit,
    as_posterior,
    relabeled_params,
)

__all__ = [
    "assignment_probabilities",
    "coclustering",
    "gradient_norms",
    "loss",
    "map_assignment",
    "membership_uncertainty",
    "mixture_density",
    "pairwise",
    "png",
    "posterior_locs",
    "posterior_membership",
    "predictive_density",
    "rank",
    "sampled_assignment",
    "trace",
]


#: Scatter plots draw at most this many rows (a fixed random subset, named in the title):
#: drawing every point cost ~0.1 ms a row (pairwise figure of 200,000 x 4: 28 s).
MAX_SCATTER_POINTS = 5000
#: Traces of at most this many steps get a marker per step.
SHORT_TRACE = 20


def _shown(n: int) -> tuple[np.ndarray | slice, str]:
    """(the rows a scatter of n rows draws, a note for its title)."""
    if n <= MAX_SCATTER_POINTS:
        return slice(None), ""
    rows = np.sort(np.random.default_rng(0).choice(n, MAX_SCATTER_POINTS, replace=False))
    return rows, f" (a random {MAX_SCATTER_POINTS:,} of {n:,} rows)"


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes (to be written atomically)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _figure(width: float, height: float) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=100, facecolor="white", layout="tight")
    return fig, fig.add_subplot()


def _style(steps: int) -> str:
    """Lines, with a marker per step for short traces (a fit stopped after 1 step drew none)."""
    return "-o" if steps <= SHORT_TRACE else "-"


def loss(losses: np.ndarray, title: str = "Convergence of SVI") -> Figure:
    """Loss per step, on a log scale as the tutorial's when every loss is positive, else on a
    symmetric log scale (a negative log joint is negative wherever the densities exceed 1,
    e.g. Student-t components on iris). losses: (steps,)."""
    losses = np.asarray(losses, dtype=float)
    fig, ax = _figure(10, 3)
    ax.plot(losses, _style(len(losses)), label="loss")
    ax.set(xlabel="iters", ylabel="loss", title=title)
    if np.all(losses > 0):
        ax.set_yscale("log")
    else:  # linear within 1 of 0, log beyond
        ax.set_yscale("symlog", linthresh=1.0)
    ax.legend(loc="best")
    return fig


def gradient_norms(
    norms: Mapping[str, np.ndarray], title: str = "Gradient norms", ylabel: str = "gradient norm"
) -> Figure:
    """One line per parameter (log scale: its zeros are left out, and a parameter that is 0
    throughout, e.g. the weight of one component, is named in the legend only). norms:
    {name: (steps,)}."""
    fig, ax = _figure(10, 4)
    for name, values in norms.items():
        v = np.asarray(values, dtype=float)
        if np.any(v > 0):
            ax.plot(np.where(v > 0, v, np.nan), _style(len(v)), label=name)
        else:
            ax.plot([], [], label=f"{name} (0 throughout)")
    ax.set(xlabel="iters", ylabel=ylabel, yscale="log", title=title)
    ax.legend(loc="best")
    return fig


def mixture_density(fit: MAPResult, x: np.ndarray, grid: np.ndarray) -> Figure:
    """Each weighted component, their sum, and the data (D == 1). x: (N, 1); grid: (G,)."""
    fit = as_fit(fit)
    p = fit.params
    dens = p.weights * np.exp(np.asarray(component_log_prob(p, np.asarray(grid)[:, None])))
    fig, ax = _figure(10, 4)
    for j in range(fit.k):
        ax.plot(grid, dens[:, j], "-", label=f"component {j} (loc {p.locs[j, 0]:.3g})")
    total = dens.sum(1)
    ax.plot(grid, total, "k--", label="mixture")
    ax.plot(x[:, 0], np.zeros(len(x)), "k*", label="data")
    ax.set(
        xlabel="data value",
        ylabel="probability density",
        title=f"Density of {fit.k}-component mixture model",
    )
    ax.legend(loc="best")
    return fig


def map_assignment(grid: np.ndarray, labels: np.ndarray) -> Figure:
    """MAP component over a 1-D grid. grid: (G,); labels: (G,)."""
    fig, ax = _figure(8, 2.5)
    ax.plot(grid, labels, label="MAP component")
    ax.set(xlabel="data value", ylabel="class assignment", title="MAP assignment")
    ax.legend(loc="best")
    return fig


def sampled_assignment(grid: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> Figure:
    """Temperature-1 draws near a class boundary with the exact probability of component 1.
    grid, labels: (G,); probs: (G, K)."""
    fig, ax = _figure(8, 2.5)
    ax.plot(grid, labels, "x", color="C0", label="posterior draw")
    ax.plot(grid, probs[:, 1], "-", color="C1", label="p(component 1 | x)")
    ax.set(xlabel="data value", ylabel="class assignment", title="Random posterior assignment")
    ax.legend(loc="best")
    return fig


def assignment_probabilities(local: LocalPosterior, x: np.ndarray, fit: MAPResult) -> Figure:
    """q(z_n = k) of the local variational posterior against the data (D == 1)."""
    fit = as_fit(fit)
    fig, ax = _figure(8, 3)
    for j in range(local.probs.shape[1]):
        loc = fit.params.locs[j, 0]
        ax.plot(x[:, 0], local.probs[:, j], "o", label=f"component with mean {loc:0.2g}")
    ax.set(
        xlabel="data value",
        ylabel="assignment probability",
        title="Mixture assignment probabilities",
        ylim=(-0.05, 1.05),
    )
    ax.legend(loc="center")
    return fig


def posterior_locs(post: Posterior) -> Figure:
    """2-D histogram of the first coordinate of locs[0] against locs[1], all chains pooled."""
    locs = as_posterior(post).params.locs
    a, b = locs[..., 0, 0].ravel(), locs[..., 1, 0].ravel()
    fig, ax = _figure(7, 7)
    h, xs, ys, image = ax.hist2d(a, b, bins=[20, 20])
    ax.contour(
        np.log(h + 3).T,
        extent=[xs.min(), xs.max(), ys.min(), ys.max()],
        colors="white",
        alpha=0.8,
    )
    fig.colorbar(image, ax=ax, label="draws")
    ax.set(
        xlabel="loc of component 0",
        ylabel="loc of component 1",
        title="Posterior density as estimated by collapsed NUTS",
    )
    return fig


def trace(post: Posterior, data: object = None, names: Sequence[str] | None = None) -> Figure:
    """Trace of every component's first loc coordinate (named in the title where D > 1), one
    panel row per chain, the components relabeled as the posterior's summary is (Stephens'
    algorithm on `data` (N, D), else ordered by that coordinate): a colour is one component
    in every chain. names: the D column names (default: the posterior's `columns`)."""
    post = as_posterior(post)
    locs = relabeled_params(post, data, "auto")[0].locs
    column = _column_names(names or post.columns, locs.shape[-1])[0]
    chains = post.num_chains
    fig = Figure(figsize=(8, 1.2 + 1.8 * chains), dpi=100, facecolor="white", layout="tight")
    axes = fig.subplots(chains, 1, squeeze=False, sharex=True)[:, 0]
    for c, ax in enumerate(axes):
        for j in range(post.model.k):
            ax.plot(locs[c, :, j, 0], lw=0.7, label=f"loc of component {j}")
        ax.set(ylabel=f"loc (chain {c})")
    of = f" of {column}" if locs.shape[-1] > 1 else ""
    axes[0].set_title(
        f"Trace of the locs{of} during NUTS\n(components relabeled as in the summary)"
    )
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("NUTS step")
    return fig


def _ellipse(ax, mean: np.ndarray, cov: np.ndarray, color: str) -> None:
    """The 2-sigma ellipse of a 2-D covariance."""
    vals, vecs = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, 100)
    pts = mean[:, None] + vecs @ (
        2 * np.sqrt(np.maximum(vals, 0))[:, None] * [np.cos(t), np.sin(t)]
    )
    ax.plot(pts[0], pts[1], "-", color=color, lw=3.5, zorder=3)
    ax.plot(pts[0], pts[1], "-", color="black", lw=1, zorder=3)  # seen over its own points


def _column_names(names: Sequence[str] | None, d: int) -> list[str]:
    return list(names) if names is not None else [f"column {j}" for j in range(d)]


def pairwise(
    fit: MAPResult,
    x: np.ndarray,
    labels: np.ndarray,
    max_dims: int = 4,
    names: Sequence[str] | None = None,
) -> Figure:
    """Scatter of every pair of the first `max_dims` columns, coloured by MAP component, with
    each component's 2-sigma ellipse (its covariance projected on the pair), and histograms
    of each column by component. x: (N, D); names: the D column names (default: the fit's
    `columns`, else "column j"). The scatters draw at most MAX_SCATTER_POINTS rows."""
    fit = as_fit(fit)
    rows, note = _shown(len(x))
    colors = np.array([f"C{k}" for k in range(fit.k)])[np.asarray(labels)[rows]]
    d = min(x.shape[1], max_dims)
    names = _column_names(names or fit.columns, x.shape[1])
    chol = np.asarray(covariance_cholesky(fit.params))
    covs = chol @ np.swapaxes(chol, -1, -2)
    fig = Figure(figsize=(3 * d, 3 * d), dpi=100, facecolor="white", layout="tight")
    axes = fig.subplots(d, d, squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if i == j:  # the components' histograms on common bins (comparable heights)
                edges = np.histogram_bin_edges(x[:, j], bins=20)
                for k in range(fit.k):
                    ax.hist(x[labels == k, j], bins=edges, color=f"C{k}", alpha=0.6)
            else:
                ax.scatter(x[rows, j], x[rows, i], c=colors, s=6, alpha=0.6, linewidths=0)
                for k in range(fit.k):
                    sub = np.ix_([j, i], [j, i])
                    _ellipse(ax, fit.params.locs[k, [j, i]], covs[k][sub], f"C{k}")
            if i == d - 1:
                ax.set_xlabel(names[j])
            if j == 0:
                ax.set_ylabel(names[i])
    shown = f"\n(the first {d} of {x.shape[1]} columns)" if d < x.shape[1] else ""
    fig.suptitle(f"Data by MAP component, with 2-sigma ellipses{shown}{note}")
    return fig


def membership_uncertainty(
    x: np.ndarray, probs: np.ndarray, names: Sequence[str] | None = None
) -> Figure:
    """Uncertainty of membership 1 - max_k p(z_n = k | x_n) over the first two columns (or
    against the value for 1-D data), of at most MAX_SCATTER_POINTS rows. x: (N, D); probs:
    (N, K); names: the D column names."""
    names = _column_names(names, x.shape[1])
    rows, note = _shown(len(x))
    x, probs = x[rows], probs[rows]
    unc = 1.0 - probs.max(axis=1)
    fig, ax = _figure(7, 5)
    top = 1 - 1 / probs.shape[1]
    label = "1 - max membership probability"
    two = x.shape[1] > 1  # 1-D data: the uncertainty is the height (on one line, it hid)
    points = ax.scatter(
        x[:, 0], x[:, 1] if two else unc, c=unc, cmap="viridis", vmin=0, vmax=top, s=10
    )
    ax.set(
        xlabel=names[0], ylabel=names[1] if two else label, title=f"Membership uncertainty{note}"
    )
    if two:
        fig.colorbar(points, ax=ax, label=label)
    else:
        ax.set_ylim(-0.03 * top, 1.03 * top)
    return fig


def posterior_membership(x: np.ndarray, membership, names: Sequence[str] | None = None) -> Figure:
    """Posterior membership probability of every point and component with its credible
    interval (`bayesmix.posterior.membership`), against the first column. x: (N, D); names:
    the D column names."""
    order = np.argsort(x[:, 0], kind="stable")
    fig, ax = _figure(9, 4)
    k = membership.mean.shape[1]
    for j in range(k):
        mean = membership.mean[order, j]
        err = np.stack([mean - membership.lower[order, j], membership.upper[order, j] - mean])
        ax.errorbar(
            x[order, 0] + 0.004 * (j - (k - 1) / 2) * np.ptp(x[:, 0]),
            mean,
            yerr=np.maximum(err, 0),
            fmt="o",
            ms=3,
            capsize=2,
            color=f"C{j}",
            label=f"component {j}",
        )
    ax.set(
        xlabel=names[0] if names else "column 0" if x.shape[1] > 1 else "data value",
        ylabel="membership probability",
        ylim=(-0.05, 1.05),
        title=f"Posterior membership with {membership.level:.0%} credible intervals",
    )
    ax.legend(loc="best")
    return fig


def predictive_density(pred, x: np.ndarray | None = None) -> Figure:
    """Posterior predictive density with its pointwise credible band
    (`bayesmix.posterior.predictive_density` on a 1-D grid), and the data. x: (N, 1)."""
    if pred.points.shape[1] != 1:
        raise SpecError("the predictive-density figure needs 1-D data (points of shape (G, 1))")
    g = pred.points[:, 0]
    fig, ax = _figure(10, 4)
    ax.fill_between(
        g,
        pred.lower,
        pred.upper,
        color="C0",
        alpha=0.3,
        lw=0,
        label=f"{pred.level:.0%} credible band",
    )
    ax.plot(g, pred.mean, "C0-", label="posterior predictive")
    if x is not None:
        ax.plot(x[:, 0], np.zeros(len(x)), "k*", label="data")
    ax.set(xlabel="data value", ylabel="probability density", title="Posterior predictive density")
    ax.legend(loc="best")
    return fig


def coclustering(matrix: np.ndarray, order: np.ndarray | None = None) -> Figure:
    """Heat map of the co-clustering matrix P(z_i = z_j | x) (N, N), rows in `order`
    (default: as given)."""
    m = matrix if order is None else matrix[np.ix_(order, order)]
    fig, ax = _figure(6, 5)
    image = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="P(same component)")
    ax.set(xlabel="point", ylabel="point", title="Posterior co-clustering")
    return fig


def rank(post: Posterior, data: np.ndarray | None = None, max_quantities: int = 6) -> Figure:
    """Rank plots: for each quantity, the histogram of every chain's draws' ranks among all
    draws (uniform when the chains agree). Components are relabeled first (Stephens with
    `data`, else ordered by the first loc coordinate). At most `max_quantities` panels."""
    post = as_posterior(post)

    params, _ = relabeled_params(post, data, "auto")
    quantities = [(n, v) for n, v in _quantities(params).items() if np.ptp(v) > 0]
    quantities = quantities[:max_quantities]
    chains, draws = post.num_chains, post.num_draws
    bins = int(min(20, max(2, draws // 10)))
    cols = min(3, len(quantities))
    rows = -(-len(quantities) // cols)
    fig = Figure(figsize=(4 * cols, 2.2 + 1.8 * rows), dpi=100, facecolor="white", layout="tight")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, v) in zip(axes, quantities, strict=False):
        ranks = np.argsort(np.argsort(v.ravel(), kind="stable")).reshape(v.shape)
        edges = np.linspace(0, chains * draws, bins + 1)
        for c in range(chains):
            counts, _ = np.histogram(ranks[c], edges)
            ax.stairs(
                counts / (draws / bins) + 2 * c,
                edges,
                baseline=2 * c,
                fill=True,
                alpha=0.6,
                color=f"C{c}",
            )
            ax.axhline(2 * c + 1, color="k", lw=0.6, ls="--")
        ax.set(
            title=name,
            xlabel="rank of draw",
            yticks=2 * np.arange(chains) + 1,
            yticklabels=[f"chain {c}" for c in range(chains)],
        )
    for ax in axes[len(quantities) :]:
        ax.set_axis_off()
    fig.suptitle("Rank plots (bars at the dashed line: chains agree)")
    return fig


def criteria(rows: list[dict], criterion: str = "bic") -> Figure:
    """BIC, AIC and ICL against K (rows as returned by `bayesmix.select_k`); the ranking
    criterion drawn bold and its best K marked."""
    rows = sorted(rows, key=lambda r: r["k"])
    ks = [r["k"] for r in rows]
    fig, ax = _figure(7, 4)
    for name in ("bic", "aic", "icl"):
        ax.plot(
            ks,
            [r[name] for r in rows],
            "o-",
            lw=2.5 if name == criterion else 1,
            label=name.upper(),
        )
    best = min(rows, key=lambda r: r[criterion])
    ax.plot([best["k"]], [best[criterion]], "k*", ms=14, label=f"best K = {best['k']}")
    ax.set(
        xlabel="number of components K",
        ylabel="criterion (lower is better)",
        title="Choosing K",
        xticks=ks,
    )
    ax.legend(loc="best")
    return fig

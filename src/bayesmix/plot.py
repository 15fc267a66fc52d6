"""The seed tutorial's figures, one function each, returning a matplotlib `Figure`.

Figures are built with `matplotlib.figure.Figure` (no pyplot global state), so they can be made
from threads and servers. The 1-D figures (density, assignments over a grid) need D == 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from .model import component_log_prob
from .result import LocalPosterior, MAPResult, Posterior

__all__ = [
    "assignment_probabilities",
    "gradient_norms",
    "loss",
    "map_assignment",
    "mixture_density",
    "posterior_locs",
    "sampled_assignment",
    "trace",
]


def _figure(width: float, height: float) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=100, facecolor="white", layout="tight")
    return fig, fig.add_subplot()


def loss(losses: np.ndarray, title: str = "Convergence of SVI") -> Figure:
    """Loss per step (log scale). losses: (steps,)."""
    fig, ax = _figure(10, 3)
    ax.plot(losses, label="loss")
    ax.set(xlabel="iters", ylabel="loss", yscale="log", title=title)
    ax.legend(loc="best")
    return fig


def gradient_norms(norms: Mapping[str, np.ndarray], title: str = "Gradient norms") -> Figure:
    """One line per parameter (log scale). norms: {name: (steps,)}."""
    fig, ax = _figure(10, 4)
    for name, values in norms.items():
        ax.plot(values, label=name)
    ax.set(xlabel="iters", ylabel="gradient norm", yscale="log", title=title)
    ax.legend(loc="best")
    return fig


def mixture_density(fit: MAPResult, x: np.ndarray, grid: np.ndarray) -> Figure:
    """Each weighted component, their sum, and the data (D == 1). x: (N, 1); grid: (G,)."""
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
    locs = post.params.locs
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


def trace(post: Posterior) -> Figure:
    """Trace of every component's first loc coordinate, one panel row per chain."""
    chains = post.num_chains
    fig = Figure(figsize=(8, 1.2 + 1.8 * chains), dpi=100, facecolor="white", layout="tight")
    axes = fig.subplots(chains, 1, squeeze=False, sharex=True)[:, 0]
    for c, ax in enumerate(axes):
        for j in range(post.model.k):
            ax.plot(post.params.locs[c, :, j, 0], lw=0.7, label=f"loc of component {j}")
        ax.set(ylabel=f"loc (chain {c})")
    axes[0].set_title("Trace plot of loc parameter during NUTS inference")
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("NUTS step")
    return fig

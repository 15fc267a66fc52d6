"""The seed tutorial's workflow end to end: MAP -> classifier -> local guide -> NUTS -> figures.

`run_workflow` computes everything and returns a `Workflow`; `write_outputs` then writes the
figures and `summary.json`, each file atomically and only after every step has succeeded, so a
failed run leaves earlier results intact. `Settings(posterior=False)` skips NUTS (and what
needs its draws): the MAP-only workflow for data too large for NUTS's passes over every row.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .infer.method import fit_by_method, resolve_method
from .infer.nuts import sample_nuts
from .infer.problem import problem
from .infer.vi import fit_local
from .io import atomic_write
from .model import Priors
from .predict import classify, predict
from .result import LocalPosterior, MAPResult, Posterior
from .serve.tables import table_bytes

__all__ = ["SUMMARY_ROWS", "Settings", "Workflow", "report", "run_workflow", "write_outputs"]

#: Up to this many rows summary.json holds the per-row results; beyond, they go to a table
#: beside it (`rows_file`), which summary.json names.
SUMMARY_ROWS = 10_000
#: Beyond this many rows the local guide is skipped: its 200 passes over the rows took 4-6x
#: the rest of a MAP-only run (2e6 x 5: 28 s of 40), its four (N, K) arrays the most memory,
#: and its optimum is the exact membership probabilities, which the classifier has computed.
LOCAL_MAX_ROWS = 1_000_000


@dataclass(frozen=True)
class Settings:
    """Options of the workflow; defaults are the tutorial's, except for NUTS (see sample_nuts)."""

    k: int = 2
    covariance: str = "shared"
    family: str = "normal"
    df: float | None = None
    priors: Priors | None = Priors()  # None: Priors.from_data(x)
    n_init: int = 100
    init: str = "seed"  # the MAP's restarts (NUTS starts from k-means)
    method: str = "auto"  # see bayesmix.infer.method: EM from 10,000 rows on, else Adam
    map_steps: int = 200
    local_steps: int = 200
    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    target_accept: float = 0.95
    dense_mass: bool = False
    seed: int = 0
    posterior: bool = True  # False: no NUTS, the MAP fit only

    def used(self) -> dict:
        """The settings as a dict, without NUTS's when there is no posterior."""
        nuts = ("chains", "warmup", "draws", "target_accept", "dense_mass")
        return {k: v for k, v in self.__dict__.items() if self.posterior or k not in nuts}


@dataclass
class Workflow:
    """Everything the workflow computed. x: (N, D); grid/zoom only for D == 1."""

    x: np.ndarray
    columns: list[str]
    settings: Settings
    fit: MAPResult
    labels: np.ndarray
    probs: np.ndarray
    local: LocalPosterior | None  # None: skipped beyond LOCAL_MAX_ROWS (settings.local_steps 0)
    posterior: Posterior | None  # None: Settings(posterior=False)
    grid: np.ndarray | None = None
    grid_labels: np.ndarray | None = None
    zoom: np.ndarray | None = None
    zoom_labels: np.ndarray | None = None
    zoom_probs: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """The JSON-ready summary written to summary.json."""
        rows = {"rows_file": rows_file()}
        if len(self.x) <= SUMMARY_ROWS:
            rows = {"classification": self.labels, "membership_probabilities": self.probs}
            if self.local is not None:
                rows["local_probabilities"] = self.local.probs
            rows = {name: v.tolist() for name, v in rows.items()}
        out = {
            "data": {"n": int(self.x.shape[0]), "d": int(self.x.shape[1]), "columns": self.columns},
            "settings": {**self.settings.used(), "priors": self.fit.priors.to_dict()},
            "map": self.fit.to_dict(),
            "best_initial_loss": self.fit.initial_loss,
            "best_init": self.fit.best_init,
            **rows,
            "posterior": None if self.posterior is None else self.posterior.to_dict(),
            "timings_s": self.timings,
        }
        if self.grid is not None:
            out["map_boundaries"] = _boundaries(self.grid, self.grid_labels)
        return out


def rows_file() -> str:
    """Where the per-row results of a large data set go: Parquet when pyarrow is installed."""
    return "rows.csv" if importlib.util.find_spec("pyarrow") is None else "rows.parquet"


def rows_table(w: Workflow) -> dict[str, np.ndarray]:
    """Per-row results: label (the MAP component), p0.. (membership probabilities) and q0..
    (local variational probabilities, when the local guide ran), each (N,)."""
    k = w.probs.shape[1]
    local = {} if w.local is None else {f"q{j}": w.local.probs[:, j] for j in range(k)}
    return {"label": w.labels, **{f"p{j}": w.probs[:, j] for j in range(k)}, **local}


def _boundaries(grid: np.ndarray, labels: np.ndarray) -> list[list[float]]:
    """[[left, right], ...] grid points between which the MAP label changes."""
    i = np.nonzero(np.diff(labels))[0]
    return [[float(grid[j]), float(grid[j + 1])] for j in i]


#: NUTS runs alongside the other stages up to this many values x components (measured, the
#: workflow on 1-D data with K = 2, warm: 5 rows 0.58 s alongside / 0.70 s after them, 250
#: rows 0.62 / 0.72, 1,000-2,000 rows even; cold, 1,000 rows 5.2 / 4.8 s).
ALONGSIDE_WORK = 2_000


def alongside(shape: tuple[int, int], k: int) -> bool:
    """Whether NUTS runs alongside the other stages for data of this shape (N, D)."""
    return shape[0] * shape[1] * k <= ALONGSIDE_WORK


def _timed(fn: Callable):
    """(fn(), seconds it took)."""
    t = time.perf_counter()
    return fn(), time.perf_counter() - t


def run_workflow(
    x: np.ndarray,
    settings: Settings = Settings(),  # noqa: B008 (immutable)
    columns: list[str] | None = None,
    progress: Callable[[str], None] = lambda msg: None,
    bars: bool | None = None,
) -> Workflow:
    """Run every step of the tutorial on validated data x (N, D). progress: called with each
    stage's messages; bars: the long stages' progress displays (EM, NUTS; `progress_bar`)."""
    s = settings
    model = {"covariance": s.covariance, "family": s.family, "df": s.df}
    priors = Priors.from_data(x) if s.priors is None else s.priors
    problem(x, s.k, s.covariance, s.family, s.df, priors)  # K, the model, the priors: first
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, message: str, fn: Callable):
        progress(message + " ...")
        value, timings[name] = _timed(fn)
        progress(f"    done in {timings[name]:.2f} s")
        return value

    def run_nuts():
        # The chains start from k-means (sample_nuts's default), whatever the MAP's `init`: from
        # random data points (the seed scheme) a chain's warm-up first travels to the mode, at
        # steps of the posterior's width (~1/sqrt(N)): 120,000 x 3 rows, K = 3, full, 8x the
        # leapfrogs per draw after 200 warm-up steps.
        options = {"chains": s.chains, "warmup": s.warmup, "draws": s.draws}
        return sample_nuts(
            x, s.k, **model, **options, priors=priors, target_accept=s.target_accept,
            dense_mass=s.dense_mass, seed=s.seed, progress=bars,
        )  # fmt: skip

    nuts_message = (
        f"Collapsed NUTS: {s.chains} chain{'s' * (s.chains != 1)} x ({s.warmup} warm-up + "
        f"{s.draws} draws)"
    )
    # NUTS needs nothing from the other stages. On small data it runs alongside them, in a
    # thread (JAX releases the GIL while it compiles and runs), so on two cores a cold run
    # compiles both at once; its messages and its time are reported when it is collected.
    # On larger data the chains' programs hold the cores and the other stages' calls queue
    # behind them (50,000 x 3, K = 3: EM 0.8 s alone, 111 s beside NUTS): NUTS runs last.
    nuts = None
    if s.posterior and alongside(x.shape, s.k):
        pool = ThreadPoolExecutor(1, thread_name_prefix="bayesmix-nuts")
        nuts = pool.submit(_timed, run_nuts)
        pool.shutdown(wait=False)
    method = resolve_method(s.method, x.shape[0])
    steps = {
        "em": f"EM (at most {s.map_steps} iterations)",
        "adam": f"{s.map_steps} Adam steps",
        "lbfgs": f"{s.map_steps} L-BFGS steps",
    }[method]
    fit = stage(
        "map",
        f"MAP fit: best of {s.n_init} initializations, {steps}",
        lambda: fit_by_method(
            x,
            s.k,
            method=method,
            steps=s.map_steps,
            **model,
            priors=priors,
            n_init=s.n_init,
            init=s.init,
            seed=s.seed,
            progress=bars,
        ),
    )
    one_d = x.shape[1] == 1
    grid = zoom = None
    batch = x
    if one_d:
        lo, hi = float(x.min()), float(x.max())
        pad = 0.25 * (hi - lo)
        grid = np.arange(180) * (hi - lo + 2 * pad) / 180 + (lo - pad)  # seed: -3..15 by 0.1
        boundary = _boundaries(grid, predict(fit, grid))
        mid = 0.5 * sum(boundary[0]) if boundary else 0.5 * (lo + hi)
        zoom = mid + np.arange(-0.25, 0.25, 0.005) * (hi - lo) / 12
        batch = np.concatenate([x, grid[:, None], zoom[:, None]])

    def labels_and_probabilities():
        labels, probs, _ = classify(fit, batch)  # one pass for both (each was one)
        return labels, predict(fit, batch, temperature=1, seed=s.seed), probs

    map_labels, drawn, probs = stage(
        "classify", "Classifying the data (temperature 0 and 1)", labels_and_probabilities
    )
    local = None
    if len(x) <= LOCAL_MAX_ROWS:
        local = stage(
            "local_guide",
            f"Local variational posterior: {s.local_steps} steps",
            lambda: fit_local(fit, x, steps=s.local_steps),
        )
    else:
        progress(f"Local variational posterior: skipped ({_local_skipped()})")
    posterior = None
    if nuts is not None:
        progress(nuts_message + " (alongside the stages above) ...")
        posterior, timings["nuts"] = nuts.result()
        progress(f"    done in {timings['nuts']:.2f} s")
    elif s.posterior:
        posterior = stage("nuts", nuts_message, run_nuts)
    timings["total"] = time.perf_counter() - t0
    n, g = len(x), 0 if grid is None else len(grid)
    return Workflow(
        x=x,
        columns=columns or [f"x{j}" for j in range(x.shape[1])],
        settings=s if local is not None else replace(s, local_steps=0),
        fit=fit,
        labels=map_labels[:n],
        probs=probs[:n],
        local=local,
        posterior=posterior,
        grid=grid,
        grid_labels=None if grid is None else map_labels[n : n + g],
        zoom=zoom,
        zoom_labels=None if zoom is None else drawn[n + g :],
        zoom_probs=None if zoom is None else probs[n + g :],
        timings=timings,
    )


def norms_titles(method: str) -> tuple[str, str]:
    """(title, y label) of the MAP fit's per-parameter trace: EM's is each iteration's change."""
    if method == "em":
        return "Changes during EM", "norm of the iteration's change"
    return "Gradient norms during MAP", "gradient norm"


def figures(w: Workflow) -> dict:
    """name -> Figure for every figure of the tutorial that applies to the data."""
    from . import plot  # matplotlib is imported only when figures are wanted

    method = resolve_method(w.settings.method, len(w.x))
    name = {"em": "EM", "adam": "SVI", "lbfgs": "L-BFGS"}[method]
    figs = {
        "map_loss.png": plot.loss(w.fit.losses, f"Convergence of MAP ({name})"),
        "map_gradient_norms.png": plot.gradient_norms(w.fit.grad_norms, *norms_titles(method)),
    }
    if w.local is not None:
        figs["local_loss.png"] = plot.loss(w.local.losses, "Convergence of the local guide")
        figs["local_gradient_norms.png"] = plot.gradient_norms(
            w.local.grad_norms, "Gradient norms of the local guide"
        )
    if w.posterior is not None:
        figs["trace.png"] = plot.trace(w.posterior, w.x, w.columns)
    figs["membership_uncertainty.png"] = plot.membership_uncertainty(w.x, w.probs, w.columns)
    if w.x.shape[1] > 1:
        figs["pairwise.png"] = plot.pairwise(w.fit, w.x, w.labels, names=w.columns)
    if w.grid is not None:
        figs["mixture_density.png"] = plot.mixture_density(w.fit, w.x, w.grid)
        figs["map_assignment.png"] = plot.map_assignment(w.grid, w.grid_labels)
        figs["sampled_assignment.png"] = plot.sampled_assignment(
            w.zoom, w.zoom_labels, w.zoom_probs
        )
        if w.local is not None:
            figs["assignment_probabilities.png"] = plot.assignment_probabilities(
                w.local, w.x, w.fit
            )
        if w.fit.k >= 2 and w.posterior is not None:
            figs["posterior_locs.png"] = plot.posterior_locs(w.posterior)
    return figs


def write_outputs(w: Workflow, out: Path, with_figures: bool = True) -> list[Path]:
    """Render everything first, then write each file atomically into `out`."""
    from .plot import png

    payloads = {name: png(fig) for name, fig in figures(w).items()} if with_figures else {}
    summary = w.summary()
    payloads["summary.json"] = json.dumps(summary, indent=1, allow_nan=False).encode()
    if "rows_file" in summary:  # too many rows for JSON: a table beside it
        name = summary["rows_file"]
        payloads[name] = table_bytes(rows_table(w), parquet=name.endswith(".parquet"))
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in payloads.items():
        atomic_write(out / name, data)
        paths.append(out / name)
    return paths


#: Rows of the (N, K) local probabilities printed; beyond, the first and last EDGE_ROWS.
PRINT_ROWS = 20
EDGE_ROWS = 5


def _local_skipped() -> str:
    """Why the local guide did not run (beyond LOCAL_MAX_ROWS rows)."""
    return (
        f"beyond {LOCAL_MAX_ROWS:,} rows; its optimum is the exact membership probabilities, "
        "which the classifier computed; bayesmix.fit_local runs it at any size"
    )


def _fmt(values, max_rows: int | None = None) -> str:
    """values as NumPy prints them (4 digits); (N, K) arrays of over max_rows rows shortened to
    their first and last EDGE_ROWS."""
    v = np.asarray(values)
    limit = (
        {} if max_rows is None else {"threshold": max_rows * v.shape[-1], "edgeitems": EDGE_ROWS}
    )
    return np.array2string(v, precision=4, suppress_small=True, **limit)


def report_map(f: MAPResult, n: int, columns: list[str]) -> str:
    """The data's size and the MAP fit, readably (the start of `report`)."""
    return "\n".join(
        [
            "",
            f"Data: {n} rows x {len(columns)} column(s) {columns}",
            f"Best initialization: #{f.best_init} of {len(f.init_losses)}, "
            f"initial loss {f.initial_loss:.4f}",
            "MAP estimate"
            + ("" if f.converged else " (NOT converged: see any warning above, else raise --steps)")
            + ":",
            f"  weights = {_fmt(f.params.weights)}",
            f"  locs    = {_fmt(f.params.locs[:, 0] if len(columns) == 1 else f.params.locs)}",
            f"  scale   = {_fmt(f.params.scale)}",
            f"  negative log joint = {f.neg_log_joint:.4f}",
        ]
    )


def report(w: Workflow) -> str:
    """A readable summary of the workflow's results (what `bayesmix demo` prints)."""
    f, post, n = w.fit, w.posterior, w.x.shape[0]
    lines = [
        report_map(f, n, w.columns),
        f"Classification (MAP component of each row): {_fmt(w.labels)}",
    ]
    if w.local is None:
        lines.append(f"Local variational posterior: skipped ({_local_skipped()}).")
    else:
        lines += [
            "Local variational probabilities q(z_n = k)"
            + (f" (the first and last {EDGE_ROWS} of {n} rows):" if n > PRINT_ROWS else ":"),
            *(f"  {row}" for row in _fmt(w.local.probs, PRINT_ROWS).splitlines()),
        ]
    if post is None:
        return "\n".join([*lines, "Posterior: not sampled (MAP only)."])
    lines += [
        f"Posterior (collapsed NUTS, {post.num_chains} chain{'s' * (post.num_chains != 1)} x "
        f"{post.num_draws} draws; "
        "components relabeled by Stephens' algorithm):",
        f"  {'quantity':<12} {'mean':>9} {'sd':>9} {'5%':>9} {'95%':>9} {'ESS':>7} {'R-hat':>6}",
    ]
    for name, row in post.diagnostics["summary"].items():
        rhat = "-" if row["r_hat"] is None else f"{row['r_hat']:.3f}"
        ess = "-" if row["ess_bulk"] is None else f"{row['ess_bulk']:.0f}"
        lines.append(
            f"  {name:<12} {row['mean']:9.4f} {row['sd']:9.4f} {row['q5']:9.4f} "
            f"{row['q95']:9.4f} {ess:>7} {rhat:>6}"
        )
    d = post.diagnostics
    lines.append(
        f"  divergences: {d['divergences']}, mean acceptance {d['mean_acceptance_rate']:.2f}"
    )
    for warning in d["warnings"]:
        lines.append(f"  WARNING: {warning}")
    if not d["warnings"]:
        lines.append(
            "  Diagnostics: no problems found (R-hat <= 1.01, enough ESS, no divergences)."
        )
    return "\n".join(lines)

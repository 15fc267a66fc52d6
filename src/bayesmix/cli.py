"""The `bayesmix` command line: one click group; library errors become clean messages."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import click

from .errors import BayesmixError


def _workflow_options(fn: Callable) -> Callable:
    """Options shared by `demo` and `fit`."""
    options = [
        click.option(
            "--out",
            "out",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Folder for summary.json and the figures.",
        ),
        click.option("--no-figures", is_flag=True, help="Write summary.json only."),
        click.option(
            "--n-init",
            default=100,
            show_default=True,
            help="Initializations scored; the best is optimized.",
        ),
        click.option(
            "--init",
            type=click.Choice(["seed", "kmeans++"]),
            default="seed",
            show_default=True,
            help="Initialization scheme.",
        ),
        click.option("--steps", default=200, show_default=True, help="Adam steps of the MAP fit."),
        click.option("--chains", default=4, show_default=True, help="NUTS chains."),
        click.option(
            "--warmup", default=1000, show_default=True, help="NUTS warm-up steps per chain."
        ),
        click.option("--draws", default=1000, show_default=True, help="NUTS draws per chain."),
        click.option("--seed", default=0, show_default=True, help="Random seed."),
        click.option("--quiet", "-q", is_flag=True, help="No progress messages."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _clean_errors(fn: Callable) -> Callable:
    """Turn bayesmix's own errors into `Error: ...` and exit code 1, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BayesmixError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bayesmix")
def main() -> None:
    """Bayesian mixture models with the assignments marginalized exactly.

    \b
    Example:
        bayesmix demo --out bayesmix-demo
        bayesmix fit data.csv --k 3 --out results
    """


@main.command()
@_workflow_options
@_clean_errors
def demo(**options) -> None:
    """Run the Pyro GMM tutorial's whole workflow on its 5-point data set.

    \b
    Example:
        bayesmix demo --out bayesmix-demo
        bayesmix demo --chains 1 --warmup 50 --draws 250   # the tutorial's NUTS settings
    """
    from .data import SEED_DATA

    _run(SEED_DATA, ["x"], k=2, **options)


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--k", "k", type=int, required=True, help="Number of components.")
@click.option("--column", default=None, help="Use only this column (default: every column).")
@_workflow_options
@_clean_errors
def fit(data: Path, k: int, column: str | None, **options) -> None:
    """Run the workflow on a CSV file with a header row.

    \b
    Example:
        bayesmix fit measurements.csv --k 3 --column length --out results
    """
    from .data import read_csv

    x, names = read_csv(data, column)
    _run(x, names, k=k, **options)


def _run(
    x, columns, *, k, out, no_figures, n_init, init, steps, chains, warmup, draws, seed, quiet
) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from .workflow import Settings, run_workflow, write_outputs

    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    settings = Settings(
        k=k,
        n_init=n_init,
        init=init,
        map_steps=steps,
        chains=chains,
        warmup=warmup,
        draws=draws,
        seed=seed,
    )
    w = run_workflow(x, settings, columns, progress=say)
    click.echo(_report(w))
    if out is not None:
        say(f"Writing {'summary.json' if no_figures else 'figures and summary.json'} to {out} ...")
        paths = write_outputs(w, out, with_figures=not no_figures)
        click.echo(f"\nWrote {len(paths)} files to {out}/")


def _fmt(values) -> str:
    import numpy as np

    return np.array2string(np.asarray(values), precision=4, suppress_small=True)


def _report(w) -> str:
    f, post = w.fit, w.posterior
    lines = [
        "",
        f"Data: {w.x.shape[0]} rows x {w.x.shape[1]} column(s) {w.columns}",
        f"Best initialization: #{f.best_init} of {len(f.init_losses)}, "
        f"initial loss {f.initial_loss:.4f}",
        "MAP estimate" + ("" if f.converged else " (NOT converged: raise --steps)") + ":",
        f"  weights = {_fmt(f.params.weights)}",
        f"  locs    = {_fmt(f.params.locs[:, 0] if w.x.shape[1] == 1 else f.params.locs)}",
        f"  scale   = {_fmt(f.params.scale)}",
        f"  negative log joint = {f.neg_log_joint:.4f}",
        f"Classification (MAP component of each row): {_fmt(w.labels)}",
        "Local variational probabilities q(z_n = k):",
        *(f"  {row}" for row in _fmt(w.local.probs).splitlines()),
        f"Posterior (collapsed NUTS, {post.num_chains} chains x {post.num_draws} draws; "
        "components ordered by loc):",
        f"  {'quantity':<12} {'mean':>9} {'sd':>9} {'5%':>9} {'95%':>9} {'ESS':>7} {'R-hat':>6}",
    ]
    for name, row in post.diagnostics["summary"].items():
        rhat = "-" if row["r_hat"] is None else f"{row['r_hat']:.3f}"
        lines.append(
            f"  {name:<12} {row['mean']:9.4f} {row['sd']:9.4f} {row['q5']:9.4f} "
            f"{row['q95']:9.4f} {row['ess_bulk']:7.0f} {rhat:>6}"
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

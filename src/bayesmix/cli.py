"""The `bayesmix` command line: one click group; library errors become clean messages."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from ._jit import parse_size
from .errors import BayesmixError, BayesmixWarning

#: From this many rows on, `fit` and `demo` warn that NUTS may take long (see --no-posterior).
LARGE_NUTS_ROWS = 100_000
#: NUTS draws per chain of `bayesmix demo`: the seed posterior's scale is heavy-tailed (its
#: effective draws: ~200-360 of 4 x 1000 over seeds, under 100 per chain; ~500-700 of 4 x 2000).
DEMO_DRAWS = 2000


def _options(*options: Callable) -> Callable[[Callable], Callable]:
    """A decorator applying click options in the order given."""

    def decorate(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


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
        click.option(
            "--save",
            "save",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Also save the fitted model (MAP, and posterior draws unless --no-posterior) "
            "to this file, e.g. model.bmx, for `bayesmix predict` and `bayesmix serve`.",
        ),
        click.option("--no-figures", is_flag=True, help="Write summary.json only."),
        click.option(
            "--no-posterior",
            is_flag=True,
            help="Skip NUTS and what needs its draws: fit the MAP only (for large data).",
        ),
        *_MODEL_OPTIONS,
        click.option(
            "--n-init",
            default=100,
            show_default=True,
            help="Initializations scored; the best is optimized.",
        ),
        click.option(
            "--init",
            type=click.Choice(["seed", "kmeans++", "kmeans"]),
            default="seed",
            show_default=True,
            help="Initialization scheme of the MAP fit (NUTS chains start from k-means).",
        ),
        _METHOD_OPTION,
        click.option(
            "--steps",
            default=200,
            show_default=True,
            help="Steps of the MAP fit (Adam steps, or EM iterations at most).",
        ),
        click.option("--chains", default=4, show_default=True, help="NUTS chains."),
        click.option(
            "--warmup", default=1000, show_default=True, help="NUTS warm-up steps per chain."
        ),
        click.option(
            "--draws",
            type=int,
            default=None,
            help="NUTS draws per chain. Default: 1000; 2000 for demo (the seed posterior's "
            "heavy-tailed scale needs them for 400 effective draws).",
        ),
        click.option(
            "--target-accept",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=0.95,
            show_default=True,
            help="NUTS target acceptance rate (the tutorial's Pyro default: 0.8; higher "
            "diverges less on the seed's funnel-shaped posterior).",
        ),
        click.option(
            "--dense-mass",
            is_flag=True,
            help="NUTS adapts a full mass matrix (default: diagonal): fewer leapfrog steps "
            "where parameters are strongly correlated, as on overlapping clusters or with a "
            "component too many (2-48x the effective draws per second there); it can also "
            "lose (1-D overlapping clusters: 0.5x).",
        ),
        click.option("--seed", default=0, show_default=True, help="Random seed."),
        click.option("--quiet", "-q", is_flag=True, help="No progress messages."),
    ]
    return _options(*options)(fn)


_METHOD_OPTION = click.option(
    "--method",
    type=click.Choice(["auto", "em", "adam", "lbfgs"]),
    default=None,
    help="MAP fitter; auto: EM from 10,000 rows on, else Adam (the tutorial's). Default: auto "
    "for demo, em for fit and select (EM converges in tens of passes at any size).",
)

# --covariance, --family, --df, --priors: the model, for every command that fits one.
_MODEL_OPTIONS = (
    click.option(
        "--covariance",
        type=click.Choice(["shared", "spherical", "diag", "full", "tied"]),
        default="shared",
        show_default=True,
        help="Covariance structure (shared: one spherical scale for all, the tutorial's).",
    ),
    click.option(
        "--family",
        type=click.Choice(["normal", "student-t"]),
        default="normal",
        show_default=True,
        help="Component family (student-t is robust to outliers).",
    ),
    click.option(
        "--df",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Student-t degrees of freedom (default: learned).",
    ),
    click.option(
        "--priors",
        type=click.Choice(["seed", "auto"]),
        default=None,
        help="seed: the tutorial's priors; auto: scaled to the data (Priors.from_data). "
        "Default: seed for demo, auto for fit and select.",
    ),
)


def _clean_errors(fn: Callable) -> Callable:
    """Turn bayesmix's own errors into `Error: ...` and exit code 1, without a traceback, and
    its warnings (BayesmixWarning) into `Warning: ...` lines on standard error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import warnings

        shown = warnings.showwarning

        def show(message, category, *rest, **kw):
            if issubclass(category, BayesmixWarning):
                click.echo(f"Warning: {message}", err=True)
            else:
                shown(message, category, *rest, **kw)

        with warnings.catch_warnings():
            warnings.simplefilter("default", BayesmixWarning)  # once, as a line of text
            warnings.showwarning = show
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
        bayesmix fit data.csv --k 3 --out results --save model.bmx
        bayesmix predict model.bmx new.csv --proba --out labels.csv
        bayesmix serve model.bmx --port 8000
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

    options["priors"] = options["priors"] or "seed"
    options["method"] = options["method"] or "auto"
    options["draws"] = DEMO_DRAWS if options["draws"] is None else options["draws"]
    _run(SEED_DATA, ["x"], k=2, **options)


def _columns_option(fn: Callable) -> Callable:
    """--columns a,b (and the older --column a) for the commands that fit data."""
    fn = click.option(
        "--columns",
        default=None,
        help="Comma-separated columns to use (default: every column, all numeric).",
    )(fn)
    return click.option("--column", default=None, hidden=True)(fn)  # one column, as --columns


def _size(text: str | None) -> int | None:
    """A byte count: 512M, 4G, 1.5GiB, 1000000 (K, M, G, T are powers of 1024)."""
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--k", "k", type=click.IntRange(min=1), required=True, help="Number of components.")
@_columns_option
@click.option(
    "--memory-budget",
    default=None,
    help="Read the file in chunks within this much memory (e.g. 4G), for data larger than "
    "memory: the MAP by EM and the per-row labels and probabilities (rows.parquet); no NUTS "
    "and no local guide.",
)
@_workflow_options
@_clean_errors
def fit(
    data: Path,
    k: int,
    columns: str | None,
    column: str | None,
    memory_budget: str | None,
    **options,
) -> None:
    """Run the workflow on a CSV file with a header row (or a Parquet file, or a folder of
    Parquet files).

    \b
    Example:
        bayesmix fit measurements.csv --k 3 --columns length,width --out results
        bayesmix fit measurements.csv --k 3 --save model.bmx
        bayesmix fit big.parquet --k 5 --no-posterior --save model.bmx   # MAP only
        bayesmix fit events/ --k 5 --no-posterior   # every events/*.parquet, as one table
        bayesmix fit huge.parquet --k 5 --memory-budget 4G --out results --save model.bmx
    """
    options["priors"] = options["priors"] or "auto"
    options["method"] = options["method"] or "em"
    options["draws"] = 1000 if options["draws"] is None else options["draws"]
    if memory_budget is not None:
        names = _column_names(columns, column)
        _run_chunked(data, names, _size(memory_budget), k=k, **options)
        return
    x, names = _read_fit_data(data, columns, column)
    _run(x, names, k=k, **options)


def _run_chunked(data: Path, names, budget: int, *, k, out, save, no_figures, no_posterior,
                 covariance, family, df, priors, n_init, init, method, steps, seed, quiet,
                 **nuts) -> None:  # fmt: skip
    """`fit --memory-budget`: the MAP by EM over chunks of the file, the per-row results
    streamed to out/rows.parquet, the fit's figures; nothing holds all the rows at once."""
    _enable_x64()
    import json
    import time

    from .infer.em import fit_em
    from .io import atomic_write
    from .model import Priors
    from .sources import open_source
    from .stream import budget_rows
    from .workflow import Settings, norms_titles, report_map

    if method not in ("em", "auto"):
        raise click.UsageError(
            f"--memory-budget fits by EM; --method {method} needs the rows in memory"
        )
    if save is not None:
        _check_target(save)
    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    if not no_posterior:
        say("Note: with --memory-budget the MAP only (NUTS and the local guide need the rows).")
    source = open_source(data, columns=names, memory_budget=budget)
    rows = budget_rows(budget, len(source.columns), k)  # the rows pass: its outputs count too
    t0 = time.perf_counter()
    n = source.scan().rows  # the fit's first pass (made once per source)
    say(f"MAP fit by EM over {n:,} rows in chunks of {source.chunk_rows:,} ...")
    fit = fit_em(source, k, covariance=covariance, family=family, df=df,
                 priors=Priors() if priors == "seed" else "auto", n_init=n_init, init=init,
                 max_iter=steps, seed=seed, progress=False if quiet else None)  # fmt: skip
    timings = {"map": time.perf_counter() - t0}
    settings = Settings(
        k=k,
        covariance=covariance,
        family=family,
        df=df,
        n_init=n_init,
        init=init,
        method="em",
        map_steps=steps,
        seed=seed,
        posterior=False,
    )
    used = {key: v for key, v in settings.used().items() if key not in ("priors", "local_steps")}
    click.echo(report_map(fit, n, source.columns))
    if out is not None:
        # Everything rendered first, then each file written atomically (rows.parquet, a pass
        # over the data, before summary.json, which names it).
        payloads = {}
        if not no_figures:
            from . import plot

            payloads = {
                "map_loss.png": plot.png(plot.loss(fit.losses, "Convergence of MAP (EM)")),
                "map_gradient_norms.png": plot.png(
                    plot.gradient_norms(fit.grad_norms, *norms_titles("em"))
                ),
            }
        say(
            f"Writing rows.parquet, summary.json{'' if no_figures else ' and figures'} to {out} ..."
        )
        out.mkdir(parents=True, exist_ok=True)
        t1 = time.perf_counter()
        _predict_chunks(fit, open_source(data, columns=source.columns, chunk_rows=rows),
                        out / "rows.parquet")  # fmt: skip
        timings["rows"] = time.perf_counter() - t1
        summary = {
            "data": {"n": n, "d": len(source.columns), "columns": source.columns},
            "settings": {**used, "memory_budget": budget, "priors": fit.priors.to_dict()},
            "map": fit.to_dict(),
            "best_initial_loss": fit.initial_loss,
            "best_init": fit.best_init,
            "rows_file": "rows.parquet",
            "posterior": None,
            "timings_s": timings,
        }
        payloads["summary.json"] = json.dumps(summary, indent=1, allow_nan=False).encode()
        for name, payload in payloads.items():
            atomic_write(out / name, payload)
        click.echo(f"\nWrote {len(payloads) + 1} files to {out}/ (per-row results: rows.parquet)")
    if save is not None:
        from .io import dumps
        from .serve.batch import jsonable

        model = dumps(
            fit,
            None,
            source.columns,
            settings={**{key: jsonable(v) for key, v in used.items()}, "n": n},
        )
        atomic_write(save, model)
        click.echo(f"Saved the model to {save}")


def _column_names(columns: str | None, column: str | None) -> list[str] | None:
    """The columns to fit: the comma-separated `columns`, or the one `column`, or None (every
    column)."""
    if columns is not None and column is not None:
        raise click.UsageError("give --columns or --column, not both")
    if column is not None:
        return [column]
    names = [c.strip() for c in (columns or "").split(",") if c.strip()]
    return names or None


def _read_fit_data(data: Path, columns: str | None, column: str | None):
    """(x (N, D), column names) of a CSV or Parquet file to fit (`_column_names`)."""
    from .data import read_table

    names = _column_names(columns, column)
    hint = "; choose numeric columns with --columns a,b" if names is None else ""
    return read_table(data, names, for_fit=True, hint=hint)


def _run(
    x,
    columns,
    *,
    k,
    out,
    save,
    no_figures,
    no_posterior,
    covariance,
    family,
    df,
    priors,
    n_init,
    init,
    method,
    steps,
    chains,
    warmup,
    draws,
    target_accept,
    dense_mass,
    seed,
    quiet,
) -> None:
    _enable_x64()
    from .model import Priors
    from .workflow import Settings, report, run_workflow, write_outputs

    if save is not None:
        _check_target(save)  # before the long run, not after it

    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    settings = Settings(
        k=k,
        covariance=covariance,
        family=family,
        df=df,
        priors=Priors() if priors == "seed" else None,
        n_init=n_init,
        init=init,
        method=method,
        map_steps=steps,
        chains=chains,
        warmup=warmup,
        draws=draws,
        target_accept=target_accept,
        dense_mass=dense_mass,
        seed=seed,
        posterior=not no_posterior,
    )
    if settings.posterior and x.shape[0] >= LARGE_NUTS_ROWS:
        say(
            f"Note: NUTS makes a pass over all {x.shape[0]:,} rows per leapfrog step and may "
            "take long; --no-posterior fits the MAP only."
        )
    w = run_workflow(x, settings, columns, progress=say, bars=False if quiet else None)
    model = None if save is None else _model_bytes(w)  # encoded before anything is written
    click.echo(report(w))
    if out is not None:
        say(f"Writing {'summary.json' if no_figures else 'figures and summary.json'} to {out} ...")
        paths = write_outputs(w, out, with_figures=not no_figures)
        tables = [p.name for p in paths if p.suffix in (".csv", ".parquet")]
        per_row = f" (per-row results: {tables[0]})" if tables else ""
        click.echo(f"\nWrote {len(paths)} file{'s' * (len(paths) != 1)} to {out}/{per_row}")
    if model is not None:
        from .errors import DataError
        from .io import atomic_write

        try:
            atomic_write(save, model)
        except OSError as exc:
            raise DataError(f"cannot write the model to {save}: {exc.strerror or exc}") from None
        click.echo(f"Saved the model to {save}")


def _enable_x64() -> None:
    """The CLI computes in float64, so `fit`, `predict` and `serve` agree exactly."""
    import jax

    jax.config.update("jax_enable_x64", True)


def _check_target(path: Path) -> None:
    """Fail early when `path` cannot be written as a file."""
    from .errors import DataError

    if path.is_dir():
        raise DataError(f"cannot write {path}: it is a folder; give a file name")
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: the folder {path.parent} does not exist; create it")
    if not os.access(path.parent, os.W_OK):
        raise DataError(f"cannot write {path}: no permission to write in {path.parent}")


def _model_bytes(w) -> bytes:
    """The saved-model file of a finished workflow (bayesmix.io format)."""
    from .io import dumps
    from .serve.batch import jsonable

    settings = {key: jsonable(v) for key, v in w.settings.used().items() if key != "priors"} | {
        "n": int(w.x.shape[0])
    }
    return dumps(w.fit, w.posterior, w.columns, settings=settings)


def _parse_ks(text: str) -> list[int]:
    """ "1..8" or "2,3,5" -> [1, ..., 8] / [2, 3, 5]."""
    try:
        if ".." in text:
            lo, hi = (int(v) for v in text.split(".."))
            ks = list(range(lo, hi + 1))
        else:
            ks = [int(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give a range like 1..8 or a list like 2,3,5") from None
    if not ks:
        raise click.BadParameter(f"{text!r} is an empty range; give low..high, e.g. 1..8")
    if min(ks) < 1:
        raise click.BadParameter(f"{text!r}: every K must be a whole number >= 1")
    return sorted(set(ks))


@main.command("select")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--k", "ks", default="1..8", show_default=True, help="Candidate K: 1..8 or 2,3,5.")
@_columns_option
@click.option(
    "--criterion",
    type=click.Choice(["bic", "aic", "icl"]),
    default="bic",
    show_default=True,
    help="Ranking criterion (lower is better).",
)
@click.option("--n-init", default=10, show_default=True, help="Initializations per K.")
@click.option(
    "--init", type=click.Choice(["seed", "kmeans++", "kmeans"]), default="kmeans", show_default=True
)
@_METHOD_OPTION
@click.option(
    "--steps", default=500, show_default=True, help="Adam steps, or EM iterations at most, per fit."
)
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for select.json and select.png (the criterion against K).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress messages.")
@_options(*_MODEL_OPTIONS)
@_clean_errors
def select_command(
    data,
    ks,
    columns,
    column,
    criterion,
    n_init,
    init,
    method,
    steps,
    seed,
    out,
    quiet,
    covariance,
    family,
    df,
    priors,
) -> None:
    """Rank candidate numbers of components K by BIC, AIC or ICL of their MAP fits.

    \b
    Example:
        bayesmix select data.csv --k 1..8 --covariance full --out select
        bayesmix select data.csv --k 2,3,4 --criterion icl
    """
    _enable_x64()
    import json
    import time

    from .infer.method import fit_by_method
    from .model import Priors
    from .select import select_k

    x, names = _read_fit_data(data, columns, column)
    candidates = [k for k in _parse_ks(ks) if k <= x.shape[0]]
    if not candidates:
        raise click.BadParameter(f"every K in {ks} exceeds the {x.shape[0]} rows of {data}")
    prior = Priors() if priors == "seed" else Priors.from_data(x)

    def fit(x, k):
        if not quiet:
            click.echo(f"Fitting K = {k} ...", err=True)
        return fit_by_method(
            x,
            k,
            method=method or "em",
            steps=steps,
            gradient_options={"final_learning_rate": 1e-3},
            covariance=covariance,
            family=family,
            df=df,
            priors=prior,
            n_init=n_init,
            init=init,
            seed=seed,
        )

    t = time.perf_counter()
    rows = select_k(x, candidates, fit, criterion)
    click.echo(
        f"\nK ranked by {criterion.upper()} (lower is better), {time.perf_counter() - t:.1f} s:"
    )
    click.echo(
        f"  {'rank':>4} {'K':>3} {'BIC':>11} {'AIC':>11} {'ICL':>11} {'log L':>11} {'used':>5}"
    )
    for r in rows:
        click.echo(
            f"  {r['rank']:>4} {r['k']:>3} {r['bic']:11.2f} {r['aic']:11.2f} {r['icl']:11.2f} "
            f"{r['log_likelihood']:11.2f} {r['occupied']:>5}"
        )
    if out is not None:
        from . import plot
        from .io import atomic_write

        out.mkdir(parents=True, exist_ok=True)
        summary = {
            "criterion": criterion,
            "columns": names,
            "model": {"covariance": covariance, "family": family, "df": df},
            "ranking": rows,
        }
        atomic_write(out / "select.png", plot.png(plot.criteria(rows, criterion)))
        atomic_write(out / "select.json", json.dumps(summary, indent=1).encode())
        click.echo(f"\nWrote select.json and select.png to {out}/")


@main.command("predict")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    required=True,
    help="Output: CSV, or Parquet when the name ends in .parquet; - writes CSV to stdout.",
)
@click.option(
    "--temperature",
    type=click.Choice(["0", "1"]),
    default="0",
    show_default=True,
    help="0: the MAP component of each row; 1: a draw from p(component | row).",
)
@click.option("--proba", is_flag=True, help="Also write the probabilities p0 .. p{K-1}.")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Seed of the temperature-1 draws (the same seed gives the same draws).",
)
@click.option(
    "--columns",
    default=None,
    help="Comma-separated data columns to use, in the model's column order "
    "(default: the model's own column names).",
)
@click.option(
    "--keep",
    default=None,
    help="Comma-separated columns of the input to copy into the output before the "
    "predictions, e.g. an id to join by (as stored; from CSV as text).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress messages.")
@_clean_errors
def predict_command(
    model: Path,
    data: Path,
    out: Path,
    temperature: str,
    proba: bool,
    seed: int,
    columns: str | None,
    keep: str | None,
    quiet: bool,
) -> None:
    """Classify the rows of a CSV or Parquet file with a saved model.

    Writes one row per input row, in order: the --keep columns, `label` (the component) and,
    with --proba, `p0` .. `p{K-1}` (the membership probabilities).

    \b
    Example:
        bayesmix fit train.csv --k 3 --save model.bmx
        bayesmix predict model.bmx new.csv --proba --out labels.csv
        bayesmix predict model.bmx new.parquet --temperature 1 --seed 7 --out draws.parquet
        bayesmix predict model.bmx new.csv --keep id --out labels.csv
    """
    _enable_x64()
    from .data import read_table, table_columns
    from .errors import SpecError
    from .io import load
    from .predict import classify
    from .serve.tables import table_bytes, write_table

    saved = load(model)
    names = saved.columns if columns is None else [c.strip() for c in columns.split(",")]
    if len(names) != saved.d:
        raise SpecError(
            f"--columns names {len(names)} column(s) {names} but the model has {saved.d}: "
            f"{saved.columns}"
        )
    hint = "; --columns NAME,... picks the file's columns to use, in the model's order"
    kept = None if keep is None else [c.strip() for c in keep.split(",")]
    if importlib.util.find_spec("pyarrow") is not None:  # else CSV in memory
        # Chunk by chunk (read, classify, write), so the data may exceed the memory.
        table_columns(data, names, hint)  # the header's checks, in the words of this command
        rows = _predict_chunks(saved.fit, data, out, names, proba, int(temperature), seed, kept)
        if not quiet and str(out) != "-":
            click.echo(f"Wrote {rows} rows to {out}", err=True)
        return
    if kept:
        raise SpecError("--keep needs pyarrow: pip install 'bayesmix[scale]'")
    x, _ = read_table(data, names, dim=saved.d, hint=hint)
    labels, probs, _ = classify(saved.fit, x, int(temperature), seed)
    table = {"label": labels}
    if proba:
        table |= {f"p{j}": probs[:, j] for j in range(probs.shape[1])}
    if str(out) == "-":
        click.echo(table_bytes(table), nl=False)
        return
    write_table(out, table)
    if not quiet:
        click.echo(f"Wrote {len(labels)} rows to {out}", err=True)


def _predict_chunks(
    fit,
    data,
    out: Path,
    names: list[str] | None = None,
    proba: bool = True,
    temperature: int = 0,
    seed: int = 0,
    keep: list[str] | None = None,
) -> int:
    """`predict` to a Parquet or CSV file (or "-": CSV to standard output), one chunk of rows of
    `data` (a file or a source) at a time (the labels and probabilities of the whole-table
    path, bit for bit), after the columns `keep` of the files."""
    from .data import is_parquet, require_pyarrow
    from .predict import classify
    from .stream import kept_columns, model_source, write_tables

    pa, _ = require_pyarrow()
    csv = str(out) == "-" or not is_parquet(out)
    if str(out) != "-":
        _check_target(out)
    source = model_source(fit, data, columns=names)
    written = ["label"] + ([f"p{j}" for j in range(fit.k)] if proba else [])
    prepend = kept_columns(source, keep, written)

    def tables():
        for chunk in source.chunks():
            labels, probs, _ = classify(fit, chunk.values, temperature, seed, chunk.first_row)
            columns = {"label": labels}
            if proba:
                columns |= {f"p{j}": probs[:, j] for j in range(probs.shape[1])}
            yield prepend(pa.table(columns))

    empty = f"{source.name} is empty; give at least one row of numbers"
    return write_tables(out, tables(), empty, csv=csv)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Most rows in one request.",
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=16.0,
    show_default=True,
    help="Largest request body, in MiB.",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--no-warmup", is_flag=True, help="Compile on first use, not at startup.")
@click.option(
    "--access-log/--no-access-log", default=True, show_default=True, help="Log each request."
)
@_clean_errors
def serve(
    model: Path,
    host: str,
    port: int,
    max_rows: int,
    max_body_mb: float,
    workers: int,
    no_warmup: bool,
    access_log: bool,
) -> None:
    """Serve a saved model over HTTP (FastAPI + uvicorn).

    POST /predict classifies rows; GET /model gives the metadata, GET /healthz the status, GET /
    the model page (summary, figure, a form), /docs the API documentation.

    \b
    Example:
        bayesmix serve model.bmx --port 8000
        curl -s localhost:8000/predict -H 'Content-Type: application/json' \\
             -d '{"rows": [[0.5], [11.0]]}'
    """
    _enable_x64()
    from .io import load

    saved = load(model)  # a bad file fails here, with its message
    try:
        import uvicorn

        from .serve.app import create_app
    except ImportError as exc:
        raise click.ClickException(
            f"bayesmix serve needs FastAPI and uvicorn ({exc}): pip install 'bayesmix[serve]'"
        ) from None
    limits = {"max_rows": max_rows, "max_body_bytes": int(max_body_mb * 2**20)}
    click.echo(
        f"Serving {model} (K = {saved.k}, D = {saved.d}, columns {saved.columns}) at "
        f"http://{host}:{port}/"
        + ("" if no_warmup else f" once the classifier is compiled for up to {max_rows} rows"),
        err=True,
    )
    options = {"host": host, "port": port, "access_log": access_log, "log_level": "info"}
    if workers == 1:
        uvicorn.run(create_app(saved, warmup=not no_warmup, **limits), **options)
        return
    os.environ.update(
        BAYESMIX_MODEL=str(model.resolve()),
        BAYESMIX_MAX_ROWS=str(limits["max_rows"]),
        BAYESMIX_MAX_BODY_BYTES=str(limits["max_body_bytes"]),
        BAYESMIX_WARMUP="0" if no_warmup else "1",
    )
    uvicorn.run("bayesmix.serve.app:from_env", factory=True, workers=workers, **options)


def entry() -> None:
    """The `bayesmix` console script: `main`, then an immediate exit with its status.

    When a command returns, its files are written (atomically) and closed, so the interpreter's
    teardown has nothing left to save: skipping it (JAX's exit hooks and module cleanup, 0.4-0.7
    s, a quarter of a warm `bayesmix demo`) with `os._exit` after flushing the standard streams
    changes only the time. An unexpected exception still ends with its traceback.
    """
    import logging

    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`bayesmix ... | head`)
            code = code or 1
    os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    entry()

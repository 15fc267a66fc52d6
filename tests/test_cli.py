"""The command line, end to end, with click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import bayesmix as bm
from bayesmix.cli import main

FIGURES = {
    "map_loss.png",
    "map_gradient_norms.png",
    "mixture_density.png",
    "map_assignment.png",
    "sampled_assignment.png",
    "local_loss.png",
    "local_gradient_norms.png",
    "assignment_probabilities.png",
    "posterior_locs.png",
    "trace.png",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--draws", "500", "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_demo_writes_figures_and_summary(demo):
    out, output = demo
    assert FIGURES <= {p.name for p in out.iterdir()}
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "MAP estimate" in output and "Posterior" in output


def test_many_rows_go_to_a_table_beside_the_summary(tmp_path, monkeypatch, seed_fit):
    """Beyond SUMMARY_ROWS rows the per-row results are a table (summary.json names it), not
    JSON arrays (a million rows made a 277 MB summary.json); the table holds the same values."""
    import pyarrow.parquet as pq

    from bayesmix import workflow

    monkeypatch.setattr(workflow, "SUMMARY_ROWS", 4)
    w = workflow.run_workflow(bm.SEED_DATA, workflow.Settings(posterior=False))
    workflow.write_outputs(w, tmp_path, with_figures=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rows_file"] == "rows.parquet" and "classification" not in summary
    table = pq.read_table(tmp_path / "rows.parquet").to_pydict()
    assert table["label"] == bm.predict(seed_fit, bm.SEED_DATA).tolist()
    probs = bm.predict_proba(seed_fit, bm.SEED_DATA)
    local = bm.fit_local(seed_fit, bm.SEED_DATA).probs
    for j in range(2):
        np.testing.assert_array_equal(table[f"p{j}"], probs[:, j])
        np.testing.assert_allclose(table[f"q{j}"], local[:, j], rtol=1e-9)


def test_summary_agrees_with_the_library(demo, seed_fit):
    summary = json.loads((demo[0] / "summary.json").read_text())
    m = summary["map"]
    np.testing.assert_allclose(m["weights"], seed_fit.params.weights, rtol=1e-9)
    np.testing.assert_allclose(m["locs"], seed_fit.params.locs, rtol=1e-9)
    assert m["scale"] == pytest.approx(float(seed_fit.params.scale), rel=1e-9)
    assert m["neg_log_joint"] == pytest.approx(seed_fit.neg_log_joint, rel=1e-9)
    assert summary["best_initial_loss"] == pytest.approx(25.6656, abs=1e-4)
    assert summary["classification"] == bm.predict(seed_fit, bm.SEED_DATA).tolist()
    local = bm.fit_local(seed_fit, bm.SEED_DATA)
    np.testing.assert_allclose(summary["local_probabilities"], local.probs, rtol=1e-9)
    post = summary["posterior"]
    assert np.shape(post["weights"]) == (4, 500, 2)
    assert np.shape(post["locs"]) == (4, 500, 2, 1)
    assert np.shape(post["scale"]) == (4, 500)
    assert set(post["diagnostics"]["summary"]) >= {"scale", "weights[0]", "locs[1,0]"}
    lo, hi = summary["map_boundaries"][0]
    assert 5.7 - 1e-9 <= lo and hi <= 5.8 + 1e-9


@pytest.mark.parametrize("option", ["--columns", "--column"])
def test_fit_on_a_csv(tmp_path, option):
    data = tmp_path / "d.csv"
    rows = "".join(f"{i},t{i},{v}\n" for i, v in enumerate([0, 1, 10, 11, 12]))
    data.write_text("id,tag,value\n" + rows)  # the text column is left out
    args = [
        "fit",
        str(data),
        "--k",
        "2",
        option,
        "value",
        "--draws",
        "100",
        "--warmup",
        "100",
        "--priors",
        "seed",
    ]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o"), "--no-figures", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["map"]["neg_log_joint"] == pytest.approx(17.4433, abs=1e-3)
    assert summary["data"]["columns"] == ["value"]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, [], "file not found"),
        ("", [], "is empty"),
        ("x\n1\nnan\n3\n", [], "non-finite"),
        ("x\n1\nabc\n", [], "'abc' is not a number"),
        ("x,y\n1,2\n3,\n5,6\n", [], "line 3, column 'y': a missing value (''); bayesmix fits"),
        ("x,y\n1,2\n3,NA\n5,6\n", [], "a missing value ('NA'); bayesmix fits complete rows"),
        ("x\n1\n", [], "single row"),
        ("x\n1\n2\n", ["--k", "3"], "K <= 2"),
        ("x\n4\n4\n4\n", [], "constant"),
        ("x\n1e308\n-1e308\n0\n", [], "too large"),
        ("x,tag\n1,a\n2,b\n", [], "not a number; choose numeric columns with --columns a,b"),
        ("x,y\n1,2\n2,1\n", ["--columns", "x,z"], "has no column(s) ['z']"),
    ],
)
def test_bad_input_exits_cleanly_and_writes_nothing(tmp_path, content, extra, message):
    path = tmp_path / "d.csv"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("earlier result")
    k = [] if "--k" in extra else ["--k", "1"]
    result = CliRunner().invoke(main, ["fit", str(path), *k, *extra, "--out", str(out), "-q"])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert (out / "summary.json").read_text() == "earlier result"
    assert [p.name for p in out.iterdir()] == ["summary.json"]


def test_fit_multivariate_with_a_model_choice(tmp_path, monkeypatch):
    from sklearn.datasets import load_iris

    from bayesmix import workflow

    nuts, seen = workflow.sample_nuts, {}
    monkeypatch.setattr(workflow, "sample_nuts", lambda *a, **kw: seen.update(kw) or nuts(*a, **kw))

    x, species = load_iris(return_X_y=True)
    data = tmp_path / "iris.csv"
    np.savetxt(data, x, delimiter=",", header="sl,sw,pl,pw", comments="")
    out = tmp_path / "o"
    args = [
        "fit",
        str(data),
        "--k",
        "3",
        "--covariance",
        "full",
        "--init",
        "kmeans++",
        "--n-init",
        "10",
        "--steps",
        "500",
        "--chains",
        "2",
        "--warmup",
        "100",
        "--draws",
        "100",
        "--dense-mass",
    ]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["map"]["model"] == {"k": 3, "covariance": "full", "family": "normal", "df": None}
    assert np.shape(summary["map"]["corr_chol"]) == (3, 4, 4)
    assert seen["dense_mass"] is True and summary["settings"]["dense_mass"] is True
    # --init is the MAP's; the chains start from k-means (sample_nuts's default) whatever it is.
    assert summary["settings"]["init"] == "kmeans++" and "init" not in seen
    # The CLI's default priors for fit are scaled to the data (Priors.from_data).
    np.testing.assert_allclose(summary["settings"]["priors"]["locs_loc"], x.mean(0))
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(species, summary["classification"]) > 0.85
    assert {"pairwise.png", "membership_uncertainty.png", "trace.png"} <= {
        p.name for p in out.iterdir()
    }


def test_select_ranks_k_and_writes_the_plot(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-4, 1, 80), rng.normal(4, 1, 80)])
    data = tmp_path / "d.csv"
    data.write_text("v\n" + "\n".join(map(str, x)) + "\n")
    out = tmp_path / "s"
    result = CliRunner().invoke(
        main, ["select", str(data), "--k", "1..3", "--method", "em", "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    ranking = json.loads((out / "select.json").read_text())["ranking"]
    assert [r["k"] for r in ranking][0] == 2
    assert (out / "select.png").read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(main, ["select", str(data), "--k", "0..x"])
    assert bad.exit_code == 2 and "range like 1..8" in bad.output
    bad = CliRunner().invoke(main, ["select", str(data), "--k", "3..1"])
    assert bad.exit_code == 2 and "'3..1' is an empty range" in bad.output


def test_k_is_checked_before_any_work(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n1\n2\n")
    bad = CliRunner().invoke(main, ["fit", str(data), "--k", "0"])
    assert bad.exit_code == 2 and "0 is not in the range x>=1" in bad.output
    bad = CliRunner().invoke(main, ["fit", str(data), "--k", "3", "--no-figures"])
    assert bad.exit_code == 1 and "K <= 2" in bad.output and "MAP fit" not in bad.output


def test_every_command_has_help_with_an_example():
    for args in (["--help"], ["demo", "--help"], ["fit", "--help"], ["select", "--help"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and "Example" in result.output


@pytest.mark.parametrize(("rows", "thread"), [(5, "bayesmix-nuts"), (1001, "MainThread")])
def test_nuts_runs_alongside_the_other_stages_on_small_data_only(monkeypatch, rows, thread):
    """Beside NUTS's chains, which hold the cores, the other stages' calls queued (EM at
    50,000 x 3: 0.8 s alone, 111 s beside NUTS): from 2,000 values x components on, NUTS
    runs after them, on the caller's thread."""
    import threading

    from bayesmix import workflow

    calls = []

    def record(stage):
        return lambda *args, **kwargs: calls.append((stage, threading.current_thread().name))

    monkeypatch.setattr(workflow, "sample_nuts", record("nuts"))
    monkeypatch.setattr(workflow, "fit_local", record("local"))
    x = np.linspace(0.0, 10.0, rows)[:, None]
    workflow.run_workflow(x, workflow.Settings(n_init=2, map_steps=5))
    assert dict(calls)["nuts"].startswith(thread)
    if thread == "MainThread":
        assert [stage for stage, _ in calls] == ["local", "nuts"]


def test_workflow_without_posterior_never_runs_nuts(monkeypatch):
    from bayesmix import workflow

    def no_nuts(*args, **kwargs):
        raise AssertionError("sample_nuts was called")

    monkeypatch.setattr(workflow, "sample_nuts", no_nuts)
    w = workflow.run_workflow(bm.SEED_DATA, workflow.Settings(posterior=False))
    assert w.posterior is None and "nuts" not in w.timings
    summary = w.summary()
    assert summary["posterior"] is None and summary["settings"]["posterior"] is False
    assert not {"chains", "warmup", "draws", "target_accept", "dense_mass"} & set(
        summary["settings"]
    )
    assert "diagnostics" not in json.dumps(summary)
    assert workflow.report(w).endswith("Posterior: not sampled (MAP only).")
    assert not {"trace.png", "posterior_locs.png"} & set(workflow.figures(w))


def test_report_shortens_the_local_probabilities_of_many_rows():
    # Every row was printed: 82 lines of probabilities for 82 rows (the summary has them all).
    from bayesmix import workflow

    settings = workflow.Settings(posterior=False, n_init=2, map_steps=5, local_steps=5)
    lines = workflow.report(workflow.run_workflow(np.arange(30.0)[:, None], settings))
    lines = lines.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Local variational"))
    assert lines[at].endswith("(the first and last 5 of 30 rows):")
    assert lines[at + 1 : at + 12] == lines[at + 1 : -1] and lines[at + 6].strip() == "..."


def test_the_local_guide_is_skipped_beyond_a_million_rows(monkeypatch):
    # 200 passes over the rows: 28 s of a 40 s MAP-only run at 2e6 x 5, for what the exact
    # membership probabilities (p0..) already are.
    from bayesmix import workflow

    def no_local(*args, **kwargs):
        raise AssertionError("fit_local was called")

    monkeypatch.setattr(workflow, "LOCAL_MAX_ROWS", 20)
    monkeypatch.setattr(workflow, "fit_local", no_local)
    settings = workflow.Settings(posterior=False, method="em", n_init=2, map_steps=5)
    w = workflow.run_workflow(np.arange(30.0)[:, None], settings)
    assert w.local is None and w.summary()["settings"]["local_steps"] == 0
    assert list(workflow.rows_table(w)) == ["label", "p0", "p1"]
    figs = workflow.figures(w)
    assert not {"local_loss.png", "local_gradient_norms.png", "assignment_probabilities.png"} & set(
        figs
    )
    assert figs["map_loss.png"].axes[0].get_title() == "Convergence of MAP (EM)"
    assert "Local variational posterior: skipped (beyond 20 rows" in workflow.report(w)


@pytest.mark.parametrize(
    ("threshold", "extra", "hinted"),
    [(5, [], True), (6, [], False), (5, ["--no-posterior"], False), (5, ["-q"], False)],
)
def test_fit_warns_before_nuts_on_large_data(tmp_path, monkeypatch, threshold, extra, hinted):
    from bayesmix import cli, workflow
    from bayesmix.errors import FitError

    def stop(*args, **kwargs):  # NUTS itself is not under test: stop where it would start
        raise FitError("NUTS would start here")

    monkeypatch.setattr(cli, "LARGE_NUTS_ROWS", threshold)
    monkeypatch.setattr(workflow, "sample_nuts", stop)
    data = tmp_path / "d.csv"
    data.write_text("x\n0\n1\n10\n11\n12\n")
    result = CliRunner().invoke(main, ["fit", str(data), "--k", "2", *extra])
    assert result.exit_code == (0 if "--no-posterior" in extra else 1), result.output
    hint = "NUTS makes a pass over all 5 rows per leapfrog step"
    assert (hint in result.stderr) == hinted and hint not in result.stdout
    if hinted:
        assert "--no-posterior fits the MAP only" in result.stderr
        assert result.stderr.index(hint) < result.stderr.index("MAP fit")


def test_console_script_exits_with_the_commands_status(tmp_path):
    # `entry` leaves with os._exit after the command: the status, the output and the files
    # must be those of `main`.
    import subprocess
    import sys

    def run(*args):
        code = "import sys; from bayesmix.cli import entry; sys.argv[0] = 'bayesmix'; entry()"
        return subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
        )

    ok = run("--version")
    assert ok.returncode == 0 and "bayesmix, version" in ok.stdout
    missing = run("fit", str(tmp_path / "none.csv"), "--k", "2")
    assert missing.returncode == 1 and "file not found" in missing.stderr
    usage = run("fit")
    assert usage.returncode == 2 and "Missing argument 'DATA'" in usage.stderr
    data = tmp_path / "d.csv"
    data.write_text("x\n" + "\n".join(map(str, [0.0, 1.0, 10.0, 11.0, 12.0, 0.5, 11.5])) + "\n")
    model = tmp_path / "m.bmx"
    fit = run("fit", str(data), "--k", "2", "--no-posterior", "--no-figures", "--save", str(model))
    assert fit.returncode == 0, fit.stderr
    assert "MAP" in fit.stdout and bm.load(model).posterior is None


def test_priors_that_miss_the_data_are_warned_of_in_one_line(tmp_path):
    data = tmp_path / "far.csv"
    data.write_text("x\n" + "\n".join(str(1e6 + v) for v in (0, 1, 10, 11, 12)) + "\n")
    args = ["fit", str(data), "--k", "2", "--priors", "seed", "--no-posterior", "--no-figures"]
    result = CliRunner().invoke(main, args)  # (its local guide then diverges: exit code 1)
    lines = [line for line in result.output.splitlines() if "far outside the priors" in line]
    assert len(lines) == 1 and lines[0].startswith("Warning: column 0 of the data")
    assert "PriorWarning" not in result.output  # not Python's warning format


def test_pairwise_figure_names_the_columns_and_says_which_it_shows():
    """The pairwise figure names its axes by the data's columns (it said "column 0" for a
    file's named columns, also in `bayesmix fit`'s figures) and says when it shows only the
    first columns."""
    from bayesmix import plot

    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)) + 4 * (rng.random((60, 1)) < 0.5)
    fit = bm.fit_em(x, 2)
    fig = plot.pairwise(fit, x, bm.predict(fit, x), max_dims=2, names=["sl", "sw", "pl"])
    assert [ax.get_xlabel() for ax in fig.axes[2:]] == ["sl", "sw"]
    assert [fig.axes[0].get_ylabel(), fig.axes[2].get_ylabel()] == ["sl", "sw"]
    assert "(the first 2 of 3 columns)" in fig.get_suptitle()
    named = bm.fit_em(pd.DataFrame(x, columns=["a", "b", "c"]), 2)  # the fit's own names
    assert plot.pairwise(named, x, bm.predict(fit, x)).axes[-1].get_xlabel() == "c"


def test_scatter_figures_draw_a_subset_of_many_rows(monkeypatch):
    """Above MAX_SCATTER_POINTS rows the scatters draw a fixed random subset of that many
    (drawing each of 200,000 rows took 28 s) and say so; the histograms count every row."""
    from bayesmix import plot

    monkeypatch.setattr(plot, "MAX_SCATTER_POINTS", 50)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 2)) + 4 * (rng.random((80, 1)) < 0.5)
    fit = bm.fit_em(x, 2)
    fig = plot.pairwise(fit, x, bm.predict(fit, x))
    scatter = fig.axes[1].collections[0]
    assert len(scatter.get_offsets()) == 50
    assert {tuple(p) for p in scatter.get_offsets()} <= {tuple(p) for p in x[:, ::-1]}
    assert sum(p.get_height() for p in fig.axes[0].patches) == 80
    # The components' histograms share their bins (each had its own 20: uneven bars).
    assert np.ptp([p.get_width() for p in fig.axes[0].patches]) < 1e-12
    assert "(a random 50 of 80 rows)" in fig.get_suptitle()
    fig = plot.membership_uncertainty(x, bm.predict_proba(fit, x))
    assert len(fig.axes[0].collections[0].get_offsets()) == 50
    assert "(a random 50 of 80 rows)" in fig.axes[0].get_title()
    assert len(plot.pairwise(fit, x[:50], bm.predict(fit, x[:50])).axes[1].collections[0]
               .get_offsets()) == 50  # fmt: skip


def test_membership_uncertainty_of_1d_data_is_its_height():
    # It was drawn at height 0 for every point of 1-D data: one line of colours.
    from bayesmix import plot

    x = np.array([[0.0], [1.0], [5.0], [5.5], [10.0], [11.0]])
    probs = np.array([[1, 0], [0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.2, 0.8], [0, 1.0]])
    points = plot.membership_uncertainty(x, probs).axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(points, np.c_[x[:, 0], 1 - probs.max(1)])


def test_demo_draws_enough_for_the_seed_posteriors_heavy_tailed_scale(monkeypatch, tmp_path):
    # 4 x 1000 draws left the seed's scale at 200-360 effective draws, under the 100 per chain
    # the diagnostics ask for: the demo, the quick start's main job, warned on every run.
    seen = {}
    monkeypatch.setattr("bayesmix.cli._run", lambda *args, **options: seen.update(options))
    x = tmp_path / "x.csv"
    x.write_text("x\n1\n2\n8\n9\n")
    for args, draws in (
        (["demo"], 2000),
        (["demo", "--draws", "300"], 300),
        (["fit", str(x), "--k", "2"], 1000),
    ):
        seen.clear()
        result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "out"), "-q"])
        assert result.exit_code == 0, result.output
        assert seen["draws"] == draws, args


def test_a_trace_that_is_zero_throughout_is_named_not_drawn_on_the_log_scale():
    # One component's EM: the weights never change; matplotlib warned "Data has no positive
    # values, and therefore cannot be log-scaled" on every `bayesmix fit --k 1`.
    import warnings

    from bayesmix import plot

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot.gradient_norms({"weights": np.zeros(5), "locs": np.r_[0.0, 1e-3, 1e-5, 0, 0]})
        fig.canvas.draw()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["weights (0 throughout)", "locs"]
    assert np.isnan(ax.lines[1].get_ydata()[[0, 3, 4]]).all()


@pytest.mark.parametrize(
    ("losses", "scale"), [(np.r_[900.0, 700, 650], "log"), (np.r_[-300.0, -500, -520], "symlog")]
)
def test_negative_losses_are_drawn_without_a_warning(losses, scale):
    # Student-t components on iris: the loss (a negative log joint) is -520 at the end, and
    # matplotlib warned "Data has no positive values, and therefore cannot be log-scaled"
    # over a blank axis.
    import warnings

    from bayesmix import plot

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot.loss(losses, "Convergence of MAP (EM)")
        fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_yscale() == scale
    low, high = ax.get_ylim()
    assert low <= losses.min() and losses.max() <= high


def test_a_trace_of_one_step_is_drawn():
    # EM stopped after 1 iteration (a component collapsing onto tied rows: Student-t on iris)
    # left a blank loss figure: one point and no marker.
    from bayesmix import plot

    fig = plot.loss(np.r_[-617.4], "Convergence of MAP (EM)")
    (line,) = fig.axes[0].lines
    assert line.get_marker() == "o"
    assert plot.loss(np.linspace(9, 1, 100)).axes[0].lines[0].get_marker() in ("None", "", None)

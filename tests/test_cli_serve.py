"""fit --save, predict and serve end to end: the CLI, the Python API and a real server (a
`bayesmix serve` process on loopback) agree exactly; the model page works in Chromium."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import bayesmix as bm
from bayesmix.cli import main
from bayesmix.serve.batch import describe

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
NEW = [0.5, 5.75, 11.0, 5.7, 5.8, -2.0, 14.0, 5.76]


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _read_csv(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return {name: [r[j] for r in rows[1:]] for j, name in enumerate(rows[0])}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """`bayesmix fit --save` on the seed data, and a CSV of new rows with an extra column."""
    tmp = tmp_path_factory.mktemp("cli")
    data = tmp / "train.csv"
    data.write_text("id,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate([0, 1, 10, 11, 12])))
    model = tmp / "model.bmx"
    args = [
        "fit",
        data,
        "--k",
        "2",
        "--column",
        "value",
        "--warmup",
        "50",
        "--draws",
        "20",
        "--priors",
        "seed",
    ]
    result = _run(*args, "--chains", "2", "--save", model, "-q")
    assert result.exit_code == 0, result.output
    assert f"Saved the model to {model}" in result.output
    new = tmp / "new.csv"
    new.write_text("name,value\n" + "".join(f"r{i},{v!r}\n" for i, v in enumerate(NEW)))
    return model, new, tmp


def test_fit_save_writes_the_map_fit_and_the_draws(saved):
    model = bm.load(saved[0])
    assert model.columns == ["value"] and model.meta["fit_method"] == "map+nuts"
    assert np.shape(model.posterior.params.locs) == (2, 20, 2, 1)
    assert model.meta["settings"]["n"] == 5 and model.meta["settings"]["draws"] == 20
    direct = bm.fit_em(bm.SEED_DATA, 2, n_init=100, init="seed", max_iter=200)  # fit's MAP
    np.testing.assert_array_equal(model.fit.params.locs, direct.params.locs)


def test_fit_no_posterior_saves_the_map_only(saved):
    """--no-posterior: the same MAP, classification and local probabilities as the whole
    workflow, no posterior anywhere, and a model file that loads, predicts and describes."""
    _, new, tmp = saved
    data = tmp / "train.csv"
    args = ["fit", data, "--k", "2", "--column", "value", "--chains", "2", "--warmup", "50"]
    args += ["--draws", "20", "-q"]
    full = _run(*args, "--out", tmp / "full", "--no-figures")
    assert full.exit_code == 0, full.output
    model, out = tmp / "map-only.bmx", tmp / "map-only"
    result = _run(*args, "--no-posterior", "--out", out, "--save", model)
    assert result.exit_code == 0, result.output
    assert "Posterior: not sampled (MAP only)." in result.stdout
    summary, reference = (json.loads((d / "summary.json").read_text()) for d in (out, tmp / "full"))
    assert summary["posterior"] is None and summary["settings"]["posterior"] is False
    assert set(summary) == set(reference) and "nuts" not in summary["timings_s"]
    for key in ("map", "classification", "membership_probabilities", "local_probabilities"):
        assert summary[key] == reference[key], key
    names = {p.name for p in out.iterdir()}
    assert {"summary.json", "map_loss.png", "mixture_density.png"} <= names
    assert not {"trace.png", "posterior_locs.png"} & names

    saved_model = bm.load(model)
    assert saved_model.posterior is None and saved_model.meta["fit_method"] == "map"
    assert "draws" not in saved_model.meta["settings"]  # no NUTS settings without NUTS
    assert describe(saved_model)["posterior"] is None
    np.testing.assert_array_equal(saved_model.fit.params.locs, summary["map"]["locs"])
    labels = tmp / "map-only.csv"
    result = _run("predict", model, new, "--out", labels)
    assert result.exit_code == 0, result.output
    expected = bm.predict(saved_model.fit, NEW).tolist()
    assert [int(v) for v in _read_csv(labels)["label"]] == expected


@pytest.mark.parametrize(("temperature", "seed"), [("0", "0"), ("1", "0"), ("1", "99")])
def test_predict_agrees_exactly_with_the_python_api(saved, temperature, seed):
    model, new, tmp = saved
    out = tmp / f"out-{temperature}-{seed}.csv"
    args = ["predict", model, new, "--out", out, "--proba", "--temperature", temperature]
    result = _run(*args, "--seed", seed)
    assert result.exit_code == 0, result.output
    fit = bm.load(model).fit
    table = _read_csv(out)
    assert list(table) == ["label", "p0", "p1"]
    labels = bm.predict(fit, NEW, temperature=int(temperature), seed=int(seed))
    assert [int(v) for v in table["label"]] == labels.tolist()
    probs = bm.predict_proba(fit, NEW)
    for j in range(2):
        assert [float(v) for v in table[f"p{j}"]] == probs[:, j].tolist()  # exact


@pytest.mark.parametrize("chunk_rows", [None, 3])
@pytest.mark.parametrize("temperature", ["0", "1"])
def test_predict_parquet_in_and_out(saved, chunk_rows, temperature, monkeypatch):
    """Parquet output is written chunk by chunk (here also in chunks of 3, 3 and 2 rows), with
    the labels (MAP or drawn) and probabilities of the whole table, bit for bit; CSV output
    too."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    from bayesmix import stream

    if chunk_rows is not None:
        monkeypatch.setattr(stream, "budget_rows", lambda budget, d, k: chunk_rows)
    model, new, tmp = saved
    pq.write_table(pa.table({"value": np.array(NEW), "other": list("abcdefgh")}), tmp / "n.parquet")
    out = tmp / "o.parquet"
    args = ["--out", out, "--proba", "-q", "--temperature", temperature, "--seed", "5"]
    result = _run("predict", model, tmp / "n.parquet", *args, "--keep", "other")
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pydict()
    assert list(table) == ["other", "label", "p0", "p1"]
    assert table["other"] == list("abcdefgh")  # each row's own, whatever the chunks
    fit = bm.load(model).fit
    assert table["label"] == bm.predict(fit, NEW, temperature=int(temperature), seed=5).tolist()
    assert table["p1"] == bm.predict_proba(fit, NEW)[:, 1].tolist()  # exact
    assert pq.ParquetFile(out).metadata.num_row_groups == (1 if chunk_rows is None else 3)
    args[1] = tmp / "o.csv"
    assert _run("predict", model, tmp / "n.parquet", *args).exit_code == 0
    csv = _read_csv(tmp / "o.csv")
    assert [int(v) for v in csv["label"]] == table["label"]
    assert [float(v) for v in csv["p1"]] == table["p1"]  # exact
    result = _run("predict", model, new, "--out", "-", "--keep", "name")  # CSV in and out
    assert result.output.splitlines()[:3] == ["name,label", "r0,0", "r1,1"]  # quoted if needed


def test_fit_within_a_memory_budget_equals_the_in_memory_fit(tmp_path):
    """`fit --memory-budget` reads the file in chunks (here of 2,048 rows, and of 1,024 for
    the per-row results, whose probabilities count too) and gives the in-memory fit's MAP and
    per-row labels; its saved model predicts like any other; a budget too small for the
    per-row results is refused before the fit."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    rng = np.random.default_rng(3)
    x = rng.normal(size=(6000, 2)) + 5 * (rng.random((6000, 1)) < 0.4)
    data = tmp_path / "d.parquet"
    pq.write_table(pa.table({"a": x[:, 0], "tag": ["t"] * 6000, "b": x[:, 1]}), data,
                   row_group_size=2500)  # fmt: skip
    common = ["--k", "2", "--columns", "a,b", "--n-init", "5", "--no-figures", "-q"]
    chunked = _run("fit", data, *common, "--memory-budget", "16.3M", "--out", tmp_path / "c",
                   "--save", tmp_path / "c.bmx")  # fmt: skip
    assert chunked.exit_code == 0, chunked.output
    whole = _run("fit", data, *common, "--no-posterior", "--method", "em", "--out", tmp_path / "w")
    assert whole.exit_code == 0, whole.output
    c, w = (json.loads((tmp_path / f / "summary.json").read_text()) for f in "cw")
    assert c["data"] == w["data"] and c["rows_file"] == "rows.parquet" and c["posterior"] is None
    for name in ("weights", "locs", "scale", "neg_log_joint"):
        np.testing.assert_allclose(c["map"][name], w["map"][name], rtol=1e-9)
    rows = pq.read_table(tmp_path / "c" / "rows.parquet").to_pydict()
    assert list(rows) == ["label", "p0", "p1"]
    assert rows["label"] == w["classification"]
    np.testing.assert_allclose(rows["p1"], np.asarray(w["membership_probabilities"])[:, 1],
                               atol=1e-12)  # fmt: skip
    assert _run("predict", tmp_path / "c.bmx", data, "--out", tmp_path / "l.csv").exit_code == 0
    bad = _run("fit", data, *common, "--memory-budget", "16.3M", "--method", "adam")
    assert bad.exit_code == 2 and "--method adam needs the rows in memory" in bad.output
    bad = _run("fit", data, *common, "--memory-budget", "16.1M", "--out", tmp_path / "x")
    assert bad.exit_code == 1 and "to classify 2 columns into 2 components" in bad.output
    assert "MAP estimate" not in bad.output and not (tmp_path / "x").exists()
    bad = _run("fit", data, *common, "--memory-budget", "lots")
    assert bad.exit_code == 2 and "'lots' is not a size; e.g. 512M or 4G" in bad.output


def test_predict_to_stdout_and_with_other_column_names(saved):
    model, new, tmp = saved
    renamed = tmp / "renamed.csv"
    renamed.write_text("v\n0.5\n11\n")
    result = _run("predict", model, renamed, "--columns", "v", "--out", "-")
    assert result.exit_code == 0, result.output
    assert result.output == "label\n0\n1\n"


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("other\n1\n", [], "its columns are ['other']; --columns NAME,... picks"),
        ("value\n1\nnan\n", [], "value (nan) in row 2"),
        ("value\n1\nabc\n", [], "column 'value': 'abc' is not a number"),
        ("value\n1\nNA\n", [], "missing value"),
        ("value\n", [], "is empty"),
        ("value\n1\n", ["--columns", "a,b"], "--columns names 2 column(s)"),
        ("value\n1\n", ["--temperature", "0.5"], "'0.5' is not one of '0', '1'"),
        ("value\n1\n", ["--seed", "-1"], "-1 is not in the range"),
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_bad_input_exits_cleanly_and_writes_nothing(saved, content, extra, message, suffix):
    model, _, tmp = saved
    data, out = tmp / "bad.csv", tmp / f"bad-out{suffix}"
    data.write_text(content)
    out.unlink(missing_ok=True)
    result = _run("predict", model, data, "--out", out, *extra)
    assert result.exit_code in (1, 2) and message in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()


def test_predict_with_a_damaged_model(saved):
    model, new, tmp = saved
    damaged = tmp / "damaged.bmx"
    damaged.write_bytes(model.read_bytes()[:-100])
    result = _run("predict", damaged, new, "--out", tmp / "x.csv")
    assert result.exit_code == 1 and "damaged.bmx is truncated or corrupted" in result.output


def test_parquet_without_pyarrow_says_how_to_install_it(saved, monkeypatch):
    """Without pyarrow, CSV in and out is read in memory (the same answer); Parquet says how to
    install pyarrow."""
    model, new, tmp = saved
    streamed = tmp / "streamed.csv"
    assert _run("predict", model, new, "--out", streamed, "--proba", "-q").exit_code == 0
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    result = _run("predict", model, new, "--out", tmp / "x.parquet")
    assert result.exit_code == 1 and "pip install pyarrow" in result.output
    result = _run("predict", model, new, "--out", tmp / "x.csv", "--keep", "name")
    assert result.exit_code == 1 and "--keep needs pyarrow" in result.output
    in_memory = tmp / "in-memory.csv"
    assert _run("predict", model, new, "--out", in_memory, "--proba", "-q").exit_code == 0
    assert _read_csv(in_memory) == {k: [str(float(v)) if k != "label" else v for v in col]
                                    for k, col in _read_csv(streamed).items()}  # fmt: skip


def test_fit_save_fails_early_and_writes_nothing(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x\n0\n1\n10\n11\n12\n")
    result = _run("fit", data, "--k", "2", "--save", tmp_path / "no" / "m.bmx", "-q")
    assert (
        result.exit_code == 1
        and "the folder" in result.output
        and "does not exist" in result.output
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("x\n1\nabc\n")
    model = tmp_path / "m.bmx"
    model.write_bytes(b"earlier model")
    result = _run("fit", bad, "--k", "1", "--save", model, "-q")
    assert result.exit_code == 1 and model.read_bytes() == b"earlier model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "d.csv", "m.bmx"]


def test_serve_refuses_a_bad_model_file(tmp_path):
    path = tmp_path / "m.bmx"
    path.write_text("not a model")
    result = _run("serve", path)
    assert result.exit_code == 1 and "is not a bayesmix model file" in result.output


def test_new_commands_have_help_with_an_example():
    for command in ("predict", "serve", "fit"):
        result = _run(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output


# --- A real server: `bayesmix serve` in a subprocess on loopback ------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(saved):
    model, _, tmp = saved
    port = _free_port()
    log = open(tmp / "serve.log", "w+")  # noqa: SIM115 (closed below)
    args = ["serve", str(model), "--port", str(port), "--max-rows", "1000", "--max-body-mb", "0.5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bayesmix.cli", *args], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # imports and the warm-up compilation
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"bayesmix serve did not start:\n{log.read()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.seek(0)
        output = log.read()
        log.close()
    assert "Traceback" not in output and "ERROR" not in output, output


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/predict", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def test_cli_python_and_service_agree_exactly(saved, server):
    model, new, tmp = saved
    fit = bm.load(model).fit
    for temperature, seed in [(0, 0), (1, 5)]:
        out = tmp / f"agree-{temperature}.csv"
        result = _run(
            "predict",
            model,
            new,
            "--out",
            out,
            "--proba",
            "--temperature",
            temperature,
            "--seed",
            seed,
        )
        assert result.exit_code == 0, result.output
        cli = _read_csv(out)
        body = {"rows": [[v] for v in NEW], "temperature": temperature, "seed": seed}
        http = _post(server, body)
        python = bm.predict(fit, NEW, temperature=temperature, seed=seed).tolist()
        assert http["labels"] == python == [int(v) for v in cli["label"]]
        probs = bm.predict_proba(fit, NEW)
        assert http["probabilities"] == probs.tolist()
        assert [[float(a), float(b)] for a, b in zip(cli["p0"], cli["p1"], strict=True)] == (
            probs.tolist()
        )


def _status(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/predict", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_served_metadata_limits_and_bad_input(server):
    """Over a real socket: the limits, and bad input answered with 4xx while the service keeps
    serving (the fixture then checks that the server logged no error)."""
    with urllib.request.urlopen(f"{server}/model", timeout=10) as r:
        info = json.loads(r.read())
    assert (info["k"], info["d"], info["columns"]) == (2, 1, ["value"])
    assert info["limits"] == {"max_rows": 1000, "max_body_bytes": 2**19}
    code, answer = _status(server, json.dumps({"rows": [[1.0]] * 1001}).encode())
    assert code == 422 and answer["detail"].startswith("rows: 1001 rows exceed the limit")
    code, answer = _status(server, json.dumps({"rows": [[1.0]] * 100_000}).encode())
    assert code == 413 and "exceeds the limit of 524288 bytes" in answer["detail"]
    bad = [b'{"rows": [[NaN]]}', b'{"rows": [["a"]]}', b'{"rows": [[1, 2]]}', b"{}", b""]
    bad += [b'{"rows": []}', b'{"rows": [[1]], "temperature": 2}', b"\xff", b"[" * 10_000]
    for body in bad:
        code, answer = _status(server, body)
        assert code == 422 and answer["detail"], body[:30]
    code, answer = _status(server, b'{"rows": [[0.5]]}')
    assert code == 200 and answer == _post(server, {"rows": [[0.5]], "temperature": 0})


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)")
def test_model_page_form_classifies_in_chromium(saved, server, tmp_path, monkeypatch):
    """The form on / classifies typed values in a real (headless) browser and shows the result,
    then shows the service's message for a value that is not a number."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    assert CHROMEDRIVER.exists(), "install chromium-driver (apt-get install chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"{server}/")
        assert "Mixture model" in driver.find_element(By.TAG_NAME, "h1").text
        values = driver.find_element(By.ID, "values")
        values.clear()
        values.send_keys("0.5, 11\n5.75")
        driver.find_element(By.ID, "submit").click()
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result tr.result-row"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#result tr.result-row")
        cells = [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows]
        fit = bm.load(saved[0]).fit
        x = [0.5, 11.0, 5.75]
        labels, probs = bm.predict(fit, x), bm.predict_proba(fit, x)
        assert [c[2] for c in cells] == [str(v) for v in labels]
        assert [c[3:] for c in cells] == [[f"{p:.4f}" for p in row] for row in probs]
        assert driver.find_element(By.ID, "status").text == "Classified 3 row(s)."

        Select(driver.find_element(By.ID, "temperature")).select_by_value("1")
        driver.find_element(By.ID, "seed").send_keys("7")
        values.clear()
        values.send_keys(" ".join(["5.75"] * 12))
        driver.find_element(By.ID, "submit").click()
        status = driver.find_element(By.ID, "status")
        wait.until(lambda d: "seed 7" in status.text)
        rows = driver.find_elements(By.CSS_SELECTOR, "#result tr.result-row")
        drawn = [r.find_element(By.CLASS_NAME, "label").text for r in rows]
        expected = bm.predict(fit, [5.75] * 12, temperature=1, seed=7)
        assert drawn == [str(v) for v in expected] and len(set(drawn)) == 2
        driver.save_screenshot(str(tmp_path / "form.png"))

        values.clear()
        values.send_keys("1.5, abc")
        driver.find_element(By.ID, "submit").click()
        status = driver.find_element(By.ID, "status")
        wait.until(lambda d: status.text.startswith("Error"))
        assert status.text == (
            "Error 422: rows[1], column 'value': Input should be a valid number, got 'abc'"
        )
        assert not driver.find_element(By.ID, "result").is_displayed()
    finally:
        driver.quit()


def test_predict_reads_and_writes_compressed_csv(saved):
    """new.csv.gz in, labels.csv.gz / .csv.bz2 out: the plain files' contents, compressed (a
    .gz name got plain text before)."""
    import bz2
    import gzip

    model, new, tmp = saved
    plain = tmp / "plain-out.csv"
    assert _run("predict", model, new, "--out", plain, "--proba").exit_code == 0
    packed = tmp / "new.csv.gz"
    packed.write_bytes(gzip.compress(Path(new).read_bytes()))
    for name, module in (("out.csv.gz", gzip), ("out.csv.bz2", bz2)):
        result = _run("predict", model, packed, "--out", tmp / name, "--proba")
        assert result.exit_code == 0, result.output
        assert module.decompress((tmp / name).read_bytes()) == plain.read_bytes()

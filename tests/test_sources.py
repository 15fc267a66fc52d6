"""Out-of-core fits: chunked arrays, Parquet and CSV files give the in-memory fit; bad chunks
are reported by file, chunk and row; a fit over a file larger than its memory budget stays
within it; streamed prediction equals `predict`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import bayesmix as bm
from bayesmix import sources
from bayesmix._threads import prefetch
from bayesmix.errors import DataError
from bayesmix.infer import estep
from bayesmix.infer.em import fit_em
from bayesmix.sources import ArraySource, open_source, rows_for_budget
from bayesmix.stream import predict_to_parquet
from conftest import three_blobs


@pytest.fixture(scope="module")
def data():
    return three_blobs(0)


@pytest.fixture(scope="module")
def files(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scale")
    table = pa.table({"a": data[:, 0], "b": data[:, 1], "label": ["x"] * len(data)})
    pq.write_table(table.slice(0, 1200), folder / "part-0.parquet", row_group_size=500)
    pq.write_table(table.slice(1200), folder / "part-1.parquet", row_group_size=500)
    pcsv.write_csv(table, folder / "data.csv")
    return folder


KW = dict(n_init=3, max_iter=25, tol=0.0, init_sample=800)


def _max_diff(a, b):
    return max(
        np.abs(np.asarray(u) - np.asarray(v)).max()
        for u, v in zip(a, b, strict=True)
        if u is not None
    )


@pytest.fixture(scope="module")
def reference(data):
    return {
        cov: fit_em(data, 3, covariance=cov, priors=bm.Priors.from_data(data), **KW)
        for cov in ("diag", "full")
    }


@pytest.mark.parametrize(("covariance", "split"), [("diag", False), ("full", True)])
def test_chunked_and_file_fits_equal_the_in_memory_fit(
    data, files, reference, covariance, split, monkeypatch
):
    if split:  # each chunk's E-step split between three threads
        monkeypatch.setattr(estep, "PARALLEL_WORK", 100)
        monkeypatch.setattr(estep, "cores", lambda: 3)
        monkeypatch.setattr(sources, "cores", lambda: 3)
        assert len(estep.row_ranges(256, 3)) == 3
    ref = reference[covariance]
    kw = dict(covariance=covariance, priors=bm.Priors.from_data(data), **KW)
    fits = {
        "chunked array": fit_em(data, 3, chunk_rows=256, **kw),
        "parquet folder": fit_em(files, 3, columns=["a", "b"], chunk_rows=256, **kw),
        "csv": fit_em(files / "data.csv", 3, columns=["a", "b"], chunk_rows=256, **kw),
    }
    for name, fit in fits.items():
        assert _max_diff(fit.params, ref.params) < 1e-5, name
        assert fit.neg_log_joint == pytest.approx(ref.neg_log_joint, rel=1e-10), name
        assert fit.initial_loss == pytest.approx(ref.initial_loss, rel=1e-10), name


def test_prefetch_keeps_order_and_errors_and_reads_one_item_ahead():
    made = []

    def items():
        for i in range(6):
            made.append(i)
            yield i
        raise DataError("chunk 7 is bad")

    seen = []
    with pytest.raises(DataError, match="chunk 7"):
        for i in prefetch(items()):
            time.sleep(0.01)  # the producer has time to run ahead, if it would
            assert len(made) <= i + 2  # the caller's item and the next one, no more
            seen.append(i)
    assert seen == list(range(6))

    made.clear()
    for i in prefetch(items()):
        if i == 1:
            break
    time.sleep(0.2)
    assert made[:2] == [0, 1] and len(made) <= 3  # stopped with the caller (item 2 at most)


def test_auto_priors_from_streamed_moments(data, files):
    fit = fit_em(files, 3, columns=["a", "b"], priors="auto", chunk_rows=256, **KW)
    ref = fit_em(data, 3, priors="auto", **KW)
    assert _max_diff(fit.params, ref.params) < 1e-5
    for a, b in zip(fit.priors, bm.Priors.from_data(data), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_memmap_is_read_in_chunks(data, tmp_path):
    mm = np.lib.format.open_memmap(
        tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=data.shape
    )
    mm[:] = data
    mm.flush()
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    fit = fit_em(x, 3, covariance="diag", **KW)
    ref = fit_em(np.asarray(x), 3, covariance="diag", **KW)
    assert _max_diff(fit.params, ref.params) < 1e-5


def test_nan_in_a_chunk_names_file_chunk_and_row(data, tmp_path):
    x = data.copy()
    x[1234, 1] = np.nan
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1]}), tmp_path / "bad.parquet")
    with pytest.raises(
        bm.DataError, match=r"bad\.parquet, chunk 3 \(rows 1025-1536\).*row 1235, column 'b'"
    ):
        fit_em(tmp_path / "bad.parquet", 3, chunk_rows=512)
    with pytest.raises(bm.DataError, match=r"chunk 2 \(rows 1001-2000\).*row 1235, column 1"):
        fit_em(x, 3, chunk_rows=1000)


def test_wrong_or_text_columns_are_named(files, tmp_path):
    with pytest.raises(
        bm.DataError, match=r"part-0\.parquet has no column 'c'.*\['a', 'b', 'label'\]"
    ):
        fit_em(files, 3, columns=["a", "c"])
    with pytest.raises(bm.DataError, match=r"column 'label' holds string, not numbers"):
        fit_em(files, 2)
    for bad in ([], ["a", "a"]):  # (ZeroDivisionError, IndexError)
        with pytest.raises(bm.SpecError, match="columns must name each column once"):
            fit_em(files, 2, columns=bad)
    csv = tmp_path / "text.csv"
    csv.write_text("a,b\n1,2\n3,4\n5,oops\n7,8\n")
    with pytest.raises(
        bm.DataError, match=r"text\.csv, line 4 \(row 3\), column 'b': 'oops' is not"
    ):
        fit_em(csv, 2)
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [1.0, 2.0]}), tmp_path / "ab.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0], "z": [1.0, 2.0]}), tmp_path / "az.parquet")
    with pytest.raises(bm.DataError, match=r"az\.parquet has columns \['a', 'z'\]; the first"):
        open_source([tmp_path / "ab.parquet", tmp_path / "az.parquet"])


def test_truncated_parquet_is_refused_and_nothing_is_written(files, tmp_path):
    good = (files / "part-0.parquet").read_bytes()
    bad = tmp_path / "cut.parquet"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(bm.DataError, match=r"cut\.parquet is not a readable Parquet file"):
        fit_em(bad, 2)
    fit = fit_em(files, 3, columns=["a", "b"], max_iter=3)
    out = tmp_path / "membership.parquet"
    with pytest.raises(bm.DataError, match="not a readable Parquet file"):
        predict_to_parquet(fit, bad, out)
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_streamed_prediction_equals_predict(data, files, tmp_path):
    fit = fit_em(data, 3, covariance="full", priors=bm.Priors.from_data(data), max_iter=10)
    out = tmp_path / "m.parquet"
    n = predict_to_parquet(fit, files, out, columns=["a", "b"], chunk_rows=300,
                           log_density=True, dtype="float64")  # fmt: skip
    table = pq.read_table(out)
    assert n == len(data) == table.num_rows
    np.testing.assert_array_equal(table["label"].to_numpy(), bm.predict(fit, data))
    probs = np.column_stack([table[f"p{j}"].to_numpy() for j in range(3)])
    np.testing.assert_allclose(probs, bm.predict_proba(fit, data), atol=1e-12)
    np.testing.assert_allclose(table["log_density"].to_numpy(), bm.log_density(fit, data))
    # At temperature 1, the draws of the whole table whatever the chunks.
    drawn_out = tmp_path / "drawn.parquet"
    predict_to_parquet(fit, files, drawn_out, columns=["a", "b"], chunk_rows=300, temperature=1,
                       seed=4, probabilities=False, dtype="float64")  # fmt: skip
    drawn = pq.read_table(drawn_out)["label"].to_numpy()
    np.testing.assert_array_equal(drawn, bm.predict(fit, data, temperature=1, seed=4))
    assert not np.array_equal(drawn, bm.predict(fit, data))  # draws, not the MAP labels
    # Dictionary encoding for the labels only (it slowed the probabilities' writing 3x).
    meta = pq.ParquetFile(out).metadata.row_group(0)
    encoded = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(5)}
    assert all(("RLE_DICTIONARY" in e) == (name == "label") for name, e in encoded.items())


def test_kept_columns_travel_with_their_rows(data, tmp_path):
    """keep= copies other columns (an id, a name) beside the predictions, each row its own:
    across files, row groups (500, 333) and chunks (300) that do not line up; from CSV as
    text (leading zeros kept). Outputs' own names, repeats, unknown columns and arrays are
    refused."""
    n = len(data)
    ids = [f"{i:05d}" for i in range(n)]
    table = pa.table({"id": np.arange(n), "a": data[:, 0], "b": data[:, 1], "name": ids})
    pq.write_table(table.slice(0, 1000), tmp_path / "p0.parquet", row_group_size=500)
    pq.write_table(table.slice(1000), tmp_path / "p1.parquet", row_group_size=333)
    pcsv.write_csv(table.set_column(0, "id", pa.array(ids)), tmp_path / "d.csv")
    fit = fit_em(data, 3, max_iter=5)
    for source, keep, want in [
        ([tmp_path / "p0.parquet", tmp_path / "p1.parquet"], ["name", "id"], np.arange(n)),
        (tmp_path / "d.csv", ["id"], np.array(ids)),
    ]:
        out = tmp_path / "m.parquet"
        predict_to_parquet(fit, source, out, columns=["a", "b"], chunk_rows=300, keep=keep)
        got = pq.read_table(out)
        assert got.column_names == keep + ["label", "p0", "p1", "p2"]
        np.testing.assert_array_equal(got["id"].to_numpy(), want)
        np.testing.assert_array_equal(got["label"].to_numpy(), bm.predict(fit, data))
    for keep, message in [
        (["label"], "names columns of the output's own"),
        (["id", "id"], "name each column once"),
        (["nope"], "d.csv has no column 'nope'"),
    ]:
        with pytest.raises((bm.SpecError, bm.DataError), match=message):
            predict_to_parquet(fit, tmp_path / "d.csv", out, columns=["a", "b"], keep=keep)
    with pytest.raises(bm.SpecError, match="keep copies columns of Parquet or CSV files"):
        predict_to_parquet(fit, data, out, keep=["id"])


def test_row_groups_larger_than_the_budget_are_refused(tmp_path):
    path = tmp_path / "big-groups.parquet"
    pq.write_table(pa.table({"a": np.arange(1e6)}), path, row_group_size=1_000_000)
    with pytest.raises(bm.DataError, match="row group 1 holds .* smaller row groups"):
        open_source(path, memory_budget=20 << 20)
    with pytest.raises(bm.SpecError, match="too small"):
        rows_for_budget(1 << 20, 10)
    assert ArraySource(np.zeros((10, 1)), memory_budget=20 << 20).chunk_rows >= 1024


_BUDGET_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np, pyarrow as pa, pyarrow.parquet as pq
    import jax
    jax.config.update("jax_enable_x64", True)
    from bayesmix.infer.em import fit_em

    folder, budget = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    big = os.path.join(folder, "big.parquet")
    with pq.ParquetWriter(big, pa.schema([("x", pa.float64())])) as w:
        for i in range(24):  # 24 row groups of 2**18 rows: 6.3e6 rows, 50 MB of float64
            n = 1 << 18
            z = rng.integers(0, 2, n)
            w.write_table(pa.table({"x": rng.normal(0, 1, n) + 6 * z}))
    small = os.path.join(folder, "small.parquet")
    pq.write_table(pq.read_table(big).slice(0, 300_000), small, row_group_size=1 << 18)
    kw = dict(memory_budget=budget, max_iter=4, tol=0.0, n_init=2, init_sample=20_000,
              dtype="float64")
    fit_em(small, 2, **kw)  # compile every program first

    def rss(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024

    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak resident set size
    base = rss("VmRSS:")
    fit = fit_em(big, 2, **kw)
    print(os.path.getsize(big), base, rss("VmHWM:") - base, fit.neg_log_joint)
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_fit_over_a_file_larger_than_the_memory_budget_stays_within_it(tmp_path):
    budget = 32 << 20
    out = subprocess.run(
        [sys.executable, "-c", _BUDGET_SCRIPT, str(tmp_path), str(budget)],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout.split()  # fmt: skip
    size, _, peak, loss = int(out[0]), int(out[1]), int(out[2]), float(out[3])
    values = 24 * (1 << 18) * 8
    assert values > budget and size > budget  # the data do not fit in the budget
    assert np.isfinite(loss)
    assert peak < budget, f"peak memory grew by {peak / 2**20:.1f} MiB"


def test_read_table_reads_a_parquet_file_or_folder_into_memory(data, files, tmp_path):
    from bayesmix.data import read_table

    x, names = read_table(files / "part-0.parquet", ["b"])
    assert names == ["b"] and x.shape == (1200, 1)
    np.testing.assert_array_equal(x[:, 0], data[:1200, 1])
    x, _ = read_table(files, ["a", "b"])  # the folder's files in name order, as one table
    np.testing.assert_array_equal(x, data)
    with pytest.raises(bm.DataError, match="holds string values, not numbers"):
        read_table(files)
    with pytest.raises(bm.DataError, match="holds no .parquet files"):
        read_table(tmp_path)
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3.0, 4.0]}), tmp_path / "0.parquet")
    pq.write_table(pa.table({"a": [5.0], "c": [6.0]}), tmp_path / "1.parquet")
    with pytest.raises(bm.DataError, match=r"1.parquet has no column\(s\) \['b'\]"):
        read_table(tmp_path)
    np.testing.assert_array_equal(read_table(tmp_path, ["a"])[0][:, 0], [1.0, 2.0, 5.0])


def test_scan_moments_and_constant_columns_across_chunks():
    """The first pass's means and standard deviations are numpy's (chunks merged exactly, also
    far from zero), and a column is refused as constant only when every chunk holds the one
    value (each chunk of [1, 1, 2, 2] in pairs is constant; the column is not)."""
    rng = np.random.default_rng(9)
    x = np.column_stack([rng.normal(1e6, 0.5, 1001), np.repeat([1.0, 2.0], [500, 501])])
    scan = ArraySource(x, chunk_rows=2).scan()
    np.testing.assert_allclose(scan.mean, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(scan.sd, x.std(0), rtol=1e-9)
    x[:, 1] = 5.0
    with pytest.raises(bm.DataError, match=r"column 1 of data is constant \(every value is 5\)"):
        ArraySource(x, chunk_rows=7).scan()


def test_csv_output_quotes_only_the_values_that_need_it(tmp_path):
    """Arrow quotes every text value; the CSV written quotes none where none needs it, and
    where one does (a comma, quote, line break, edge blanks), a reader gets every value back."""
    import csv

    from bayesmix.stream import write_tables

    plain = pa.table({"id": ["a1", "b2"], "label": [0, 1], "p": [0.25, 1.0]})
    write_tables(tmp_path / "plain.csv", [plain], "none", csv=True)
    assert (tmp_path / "plain.csv").read_text().splitlines() == [
        "id,label,p", "a1,0,0.25", "b2,1,1"
    ]  # fmt: skip
    names = ["a,1", 'b"2', "c\n3", " d", "e"]
    odd = pa.table({"id": names, "label": list(range(5))})
    write_tables(tmp_path / "odd.csv", [plain.select(["id", "label"]), odd], "none", csv=True)
    with open(tmp_path / "odd.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["id", "label"], ["a1", "0"], ["b2", "1"]] + [
        [n, str(i)] for i, n in enumerate(names)
    ]

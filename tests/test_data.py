"""Bad input: every case gets a clear DataError naming the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest

import bayesmix as bm


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "empty"),
        ([[1.0]], "single row"),
        ([1.0, np.nan, 3.0], r"non-finite value \(nan\) in row 2"),
        ([1.0, np.inf], "non-finite"),
        (["a", "b"], "not numeric"),
        ([3.0, 3.0, 3.0], "constant"),
        ([1e308, -1e308, 0.0], "too large"),
        (np.zeros((2, 2, 2)), "shape"),
    ],
)
def test_bad_arrays(data, message):
    with pytest.raises(bm.DataError, match=message):
        bm.fit_map(data, 1)


def test_data_frames_are_named_by_their_columns():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [0.0, 1.0, 5.0], "tag": ["x", "y", "z"], "b": [1.0, 2.0, 0.5]})
    with pytest.raises(bm.DataError, match=r"column 'tag' is not numeric .* data\[\['a', 'b'\]\]"):
        bm.fit_em(frame, 1)
    # columns= picks a pandas DataFrame's columns by name, as it does a file's
    fit = bm.fit_em(frame, 1, columns=["b", "a"])
    np.testing.assert_allclose(fit.params.locs, bm.fit_em(frame[["b", "a"]], 1).params.locs)
    with pytest.raises(
        bm.DataError, match=r"no column\(s\) \['c'\] of .*; its columns are \['a', 'tag'"
    ):
        bm.fit_em(frame, 1, columns=["a", "c"])
    assert bm.fit_em(frame, 1, columns="a").columns == ("a",)  # a string is one name
    for bad in ([], ["a", "a"]):  # (an empty list failed deep inside, duplicates fitted twice)
        with pytest.raises(bm.SpecError, match="columns must name each column once"):
            bm.fit_em(frame, 1, columns=bad)
    with pytest.raises(bm.DataError, match=r"column 'tag' is not numeric .* encode it as numbers"):
        bm.fit_em(frame[["tag"]], 1)
    frame = frame.drop(columns="tag").assign(b=[1.0, np.nan, 0.5])
    with pytest.raises(bm.DataError, match=r"\(nan\) in row 2, column 'b'"):
        bm.fit_em(frame, 1)


def test_complex_numbers_are_refused():
    with pytest.raises(bm.DataError, match="complex numbers; pass real numbers"):
        bm.fit_map(np.array([1 + 1j, 2, 3]), 2)


def test_csv_reading(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("name,x,y\na,0,1\nb,1,3\nc,10,4\n")
    x, names = bm.read_csv(path, "x")
    assert names == ["x"] and x[:, 0].tolist() == [0.0, 1.0, 10.0]
    with pytest.raises(bm.DataError, match=r"line 2, column 'name': 'a' is not a number"):
        bm.read_csv(path)
    with pytest.raises(bm.DataError, match=r"no column\(s\) \['z'\]"):
        bm.read_csv(path, "z")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("x\n", "single row|empty"),
        ("1\n2\n3\n", "no header"),
        ("x\n1\n\n2\nnan\n", "non-finite value"),
        ("x,y\n1,2\n3\n", "line 3: 1 fields"),
        ("x;y\n1;2\n3;4\n", "line 2.* separated by ';', and bayesmix reads commas"),
        ("x\ty\n1\t2\n3\t4\n", "separated by '\\\\t'"),
    ],
)
def test_bad_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(bm.DataError, match=message):
        bm.read_csv(path)
    if "separated" in message:  # read in chunks, the same advice
        with pytest.raises(bm.DataError, match=message):
            bm.fit_em(path, 1, chunk_rows=2)


def test_missing_file(tmp_path):
    with pytest.raises(bm.DataError, match="file not found"):
        bm.read_csv(tmp_path / "nope.csv")


def test_large_but_safe_values_fit_without_nan():
    x = np.array([0.0, 1.0, 10.0, 11.0, 12.0]) * 1e100
    with pytest.warns(bm.FitWarning, match="sd 5.19e"):  # Adam's steps against the spread
        fit = bm.fit_map(x, 2, priors=bm.Priors(locs_scale=1e101, scale_loc=230.0))
    assert np.all(np.isfinite(fit.params.locs)) and np.isfinite(fit.neg_log_joint)
    labels = bm.predict(fit, x)
    assert labels[0] == labels[1] != labels[2]


FAST, SLOW = True, False  # read by pyarrow, or (pyarrow declining) by Python


@pytest.mark.parametrize(
    ("text", "by_arrow"),
    [
        ("a,b,tag\n0.1,2,x\n1e-3,-4.5,y\n7,8,z\n", FAST),
        ("\ufeffa,b\r\n1,2\r\n3,4\r\n5,6\r\n", FAST),  # BOM, CRLF
        ("\n\n a , b \n1,2\n\n3,4\n5,6\n\n", FAST),  # blank lines, padded names
        ("a,b\n0.30000000000000004,1e308\n2.2250738585072014e-308,5e-324\n1,2\n", FAST),
        ('a,b\n"1.5",2\n3," 4 "\n1_000,6\n', SLOW),  # quoted, padded, Python's underscores
        ("a,b\n1,2\n3,\n5,6\n", SLOW),  # an empty cell
        ("a,b\n1,2\n3,nan\n5,6\n", SLOW),  # NaN
        ("a,b\n1,2\n3\n5,6\n", SLOW),  # a short row
        ("a,b\n1,2\n3,x\n5,6\n", SLOW),  # text
        ('"a\nfirst",b\n1,2\n3,4\n5,6\n', FAST),  # a line break in a name
    ],
)
def test_csv_values_and_messages_do_not_depend_on_pyarrow(tmp_path, monkeypatch, text, by_arrow):
    """pyarrow parses CSV values when installed; whatever it reads, the answer (values bit for
    bit, or the error message) is the one of the pure-Python reader."""
    pytest.importorskip("pyarrow")
    from bayesmix import data

    path = tmp_path / "d.csv"
    path.write_text(text, encoding="utf-8")

    names = data.csv_columns(path)[0][:2]

    def read():
        try:
            return data.read_table(path, names, for_fit=False)
        except bm.DataError as exc:
            return str(exc)

    fast = read()
    (header,), lines = data._csv_rows(path, header_only=True)
    assert (data._csv_arrow(path, header, lines, [0, 1]) is not None) == by_arrow
    monkeypatch.setattr(data, "_csv_arrow", lambda *args: None)
    slow = read()
    if isinstance(slow, str):
        assert fast == slow
    else:
        np.testing.assert_array_equal(fast[0], slow[0])
        assert fast[1] == slow[1] == names and len(fast[0]) == 3


def test_nullable_and_decimal_columns(tmp_path):
    """pandas' nullable integers read as numbers, their missing values (pd.NA) reported by row
    and column like NaN (they raised "float() argument must be ... not 'NAType'"); Parquet
    decimal columns (databases' NUMERIC) are read as floats by the chunked reader too (it
    refused them: "holds decimal128(6, 3), not numbers")."""
    import decimal

    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(60, 2)) + 4 * (rng.random((60, 1)) < 0.5), 3)
    frame = pd.DataFrame({"a": pd.array(np.arange(60) % 7, dtype="Int64"), "b": x[:, 1]})
    np.testing.assert_array_equal(bm.as_data(frame)[:, 0], np.arange(60) % 7)
    frame.loc[5, "a"] = pd.NA
    with pytest.raises(bm.DataError, match=r"non-finite value \(nan\) in row 6, column 'a'"):
        bm.fit_em(frame, 2)
    path = tmp_path / "d.parquet"
    decimals = pa.array([decimal.Decimal(f"{v:.3f}") for v in x[:, 0]], pa.decimal128(6, 3))
    pq.write_table(pa.table({"a": decimals, "b": x[:, 1]}), path)
    from bayesmix.infer.em import fit_em

    by_chunks = fit_em(str(path), 2, chunk_rows=16, n_init=2)
    in_memory = fit_em(x, 2, n_init=2)
    np.testing.assert_allclose(by_chunks.params.locs, in_memory.params.locs, rtol=1e-6)


def test_unnamed_and_index_columns_are_left_out_with_a_warning(tmp_path):
    """Without named columns, a file's unnamed columns (a trailing separator; the row index
    pandas' to_csv writes unless index=False) and pandas' Parquet index columns are not read
    (they were fitted as a dimension, or failed as missing values), with a DataWarning; named,
    they are read."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from bayesmix.data import read_table
    from bayesmix.sources import open_source

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2))
    frame = pd.DataFrame(x, columns=["a", "b"], index=np.arange(40) * 3)
    frame.to_csv(tmp_path / "index.csv")  # header ",a,b"
    frame.to_parquet(tmp_path / "index.parquet")  # a __index_level_0__ column
    (tmp_path / "trailing.csv").write_text("a,b,,\n" + "".join(f"{u},{v},,\n" for u, v in x))
    pd.read_csv(tmp_path / "index.csv").to_csv(tmp_path / "again.csv", index=False)  # Unnamed: 0
    cases = (("index.csv", 1), ("index.parquet", 1), ("trailing.csv", 2), ("again.csv", 1))
    for name, left in cases:
        with pytest.warns(bm.DataWarning, match=rf"left out {left} unnamed or index column"):
            values, names = read_table(tmp_path / name)
        assert names == ["a", "b"]
        np.testing.assert_allclose(values, x, rtol=1e-15)
        with pytest.warns(bm.DataWarning, match=name):
            assert open_source(tmp_path / name, chunk_rows=16).columns == ["a", "b"]
    values, _ = read_table(tmp_path / "index.csv", ["", "a"])  # named: read
    np.testing.assert_array_equal(values[:, 0], np.arange(40) * 3)


def test_a_data_frame_read_with_its_index_is_fitted_without_it(tmp_path):
    """`pd.read_csv` of a file written with its index gives an `Unnamed: 0` column: fitted as
    a dimension before, by every fitter; now left out with a DataWarning, as from files."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0, 1, (60, 2)), rng.normal(6, 1, (60, 2))])
    pd.DataFrame(x, columns=["a", "b"]).to_csv(tmp_path / "x.csv")
    frame = pd.read_csv(tmp_path / "x.csv")
    assert list(frame.columns) == ["Unnamed: 0", "a", "b"]
    fitters = {
        "fit_em": lambda d: bm.fit_em(d, 2, n_init=2),
        "fit_map": lambda d: bm.fit_map(d, 2, n_init=2, steps=50),
        "select_k": lambda d: bm.select_k(d, [1, 2]),
    }
    for name, fit in fitters.items():
        with pytest.warns(
            bm.DataWarning, match=r"the data frame: left out 1 unnamed or index"
        ) as w:
            result = fit(frame)
        # Attributed to the user's line (the lambda above), not to a line inside bayesmix.
        assert {r.filename for r in w} == {__file__}, name
        if name == "select_k":
            assert [r["k"] for r in result] == [2, 1]
        else:
            assert result.columns == ("a", "b"), name
            assert result.params.locs.shape == (2, 2), name
    fitted = bm.fit_em(frame[["a", "b"]], 2, n_init=2)  # no warning: nothing left out
    with pytest.warns(bm.DataWarning, match="select the columns to fit by name"):
        np.testing.assert_allclose(bm.fit_em(frame, 2, n_init=2).params.locs, fitted.params.locs)


def test_compressed_csv_files_are_read_as_they_are(tmp_path):
    """.csv.gz and .csv.bz2 files give the plain file's values, in memory and in chunks (they
    were refused: "decompress it first"); a damaged one is named, not a zlib traceback."""
    import bz2
    import gzip

    from bayesmix.data import read_table
    from bayesmix.infer.em import fit_em
    from bayesmix.sources import open_source

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, (150, 2)), rng.normal(6, 1, (150, 2))])
    text = "a,b\n" + "".join(f"{float(u)!r},{float(v)!r}\n" for u, v in x)
    (tmp_path / "x.csv").write_text(text)
    reference = fit_em(tmp_path / "x.csv", 2, n_init=2)
    for name, module in (("x.csv.gz", gzip), ("x.csv.bz2", bz2)):
        with module.open(tmp_path / name, "wt") as fh:
            fh.write(text)
        values, names = read_table(tmp_path / name)
        np.testing.assert_array_equal(values, x)
        assert names == ["a", "b"]
        chunks = [c.values for c in open_source(tmp_path / name, chunk_rows=64).chunks()]
        np.testing.assert_array_equal(np.concatenate(chunks), x)
        for options in ({}, {"chunk_rows": 64}):
            fit = fit_em(tmp_path / name, 2, n_init=2, **options)
            np.testing.assert_allclose(fit.params.locs, reference.params.locs, rtol=1e-9)
    (tmp_path / "bad.csv.gz").write_bytes(b"a,b\n1,2\n")  # not gzip inside
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(text.encode())[:500])  # truncated
    for name in ("bad.csv.gz", "cut.csv.gz"):
        for options in ({}, {"chunk_rows": 64}):
            with pytest.raises(bm.DataError, match=rf"{name} could not be"):
                fit_em(tmp_path / name, 2, **options)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("d.csv.xz", "is compressed, and not as a CSV file named"),
        ("d.gz", "is compressed, and not as a CSV file named"),
        ("d.xlsx", "is a spreadsheet; save the sheet as CSV"),
        ("d.json", "is JSON; read it with pandas.read_json"),
        ("d.npy", "is a NumPy file; load it with numpy.load"),
    ],
)
def test_files_of_other_formats_say_what_to_do(tmp_path, name, message):
    """Read as CSV they failed as "not valid UTF-8" or, for JSON, "is empty"; in chunks as
    "unknown file kind"."""
    from bayesmix.infer.em import fit_em

    (tmp_path / name).write_bytes(b'{"a": [1, 2]}\n')
    for options in ({}, {"chunk_rows": 64}):
        with pytest.raises(bm.DataError, match=f"{name} {message}"):
            fit_em(tmp_path / name, 2, **options)

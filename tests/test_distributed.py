"""Fits on Dask collections equal the in-memory fit: Dask's local scheduler, a local
dask.distributed cluster, arrays and DataFrames; bad partitions are named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.infer.em import fit_em
from bayesmix.stream import predict_to_parquet
from conftest import three_blobs

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("dask.distributed")

KW = dict(n_init=3, max_iter=25, tol=0.0, init_sample=800)


@pytest.fixture(scope="module")
def data():
    return three_blobs(1)


@pytest.fixture(scope="module")
def reference(data):
    return fit_em(data, 3, covariance="full", priors=bm.Priors.from_data(data), **KW)


@pytest.fixture(scope="module")
def client():
    # In-process workers (threads): the same code path as a remote cluster (tasks, the
    # scheduler, the tree reduction) without starting Python processes on a 2-core machine.
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def _max_diff(a, b):
    return max(
        np.abs(np.asarray(u) - np.asarray(v)).max()
        for u, v in zip(a, b, strict=True)
        if u is not None
    )


def test_dask_array_on_the_local_scheduler_equals_in_memory(data, reference):
    x = da.from_array(data, chunks=(700, 2))
    fit = fit_em(x, 3, covariance="full", priors=bm.Priors.from_data(data), **KW)
    assert _max_diff(fit.params, reference.params) < 1e-5
    assert fit.neg_log_joint == pytest.approx(reference.neg_log_joint, rel=1e-10)
    # Partitions a filter left empty are skipped (their checks raised numpy's ValueError).
    half = len(data) // 2
    frame = pd.DataFrame({"a": data[:, 0], "b": data[:, 1], "row": np.arange(len(data))})
    df = dd.from_pandas(frame, npartitions=4)
    kw = dict(covariance="full", priors=bm.Priors.from_data(data), **KW)
    filtered = fit_em(df[df["row"] < half], 3, columns=["a", "b"], **kw)
    assert _max_diff(filtered.params, fit_em(data[:half], 3, **kw).params) < 1e-5


def test_dask_array_and_dataframe_on_a_local_cluster_equal_in_memory(data, reference, client):
    kw = dict(covariance="full", priors=bm.Priors.from_data(data), **KW)
    x = da.from_array(data, chunks=(600, 1)).persist()  # columns are rechunked into one
    df = dd.from_pandas(
        pd.DataFrame({"a": data[:, 0], "b": data[:, 1], "tag": "t"}), npartitions=5
    ).persist()
    for fit in (fit_em(x, 3, **kw), fit_em(df, 3, columns=["a", "b"], **kw)):
        assert _max_diff(fit.params, reference.params) < 1e-5
        assert fit.initial_loss == pytest.approx(reference.initial_loss, rel=1e-10)
    assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.workers)) == 2


def test_bad_partitions_and_columns_are_named(data, tmp_path):
    bad = data.copy()
    bad[1800, 0] = np.inf
    with pytest.raises(
        bm.DataError, match=r"Dask array, partition 3 \(rows 1401-2100\).*row 1801, column 0"
    ):
        fit_em(da.from_array(bad, chunks=(700, 2)), 2)
    frame = pd.DataFrame({"a": bad[:, 0], "b": bad[:, 1], "tag": "t"})
    df = dd.from_pandas(frame, npartitions=4)
    with pytest.raises(bm.DataError, match=r"DataFrame, partition 3 .*column 'a'"):
        fit_em(df, 3, columns=["a", "b"])
    with pytest.raises(bm.DataError, match=r"no column 'c'"):
        fit_em(df, 3, columns=["a", "c"])
    with pytest.raises(bm.DataError, match=r"column 'tag' .* not numbers"):
        fit_em(df, 2)


def test_streamed_prediction_from_a_dask_dataframe(data, reference, tmp_path):
    import pyarrow.parquet as pq

    df = dd.from_pandas(pd.DataFrame({"a": data[:, 0], "b": data[:, 1]}), npartitions=3)
    n = predict_to_parquet(reference, df, tmp_path / "m.parquet", dtype="float64")
    table = pq.read_table(tmp_path / "m.parquet")
    assert n == len(data)
    np.testing.assert_array_equal(table["label"].to_numpy(), bm.predict(reference, data))
    with pytest.raises(bm.SpecError, match="distributed.predictions keeps the index to join"):
        predict_to_parquet(reference, df, tmp_path / "k.parquet", keep=["a"])


def test_predictions_on_the_cluster_equal_in_memory(data, reference, client):
    """`predictions` classifies each partition on the workers: the same labels (MAP and
    temperature-1 draws, which depend on each row's number in the whole table), probabilities
    and log densities as in memory, with the data's index; arrays too; bad rows named."""
    from bayesmix.distributed import predictions

    index = pd.RangeIndex(len(data)) * 2 + 7  # an index of the user's, kept
    frame = pd.DataFrame({"id": index, "a": data[:, 0], "b": data[:, 1]}, index=index)
    df = dd.from_pandas(frame, npartitions=4)
    out = predictions(reference, df, columns=["a", "b"], log_density=True).compute()
    assert list(out.columns) == ["label", "p0", "p1", "p2", "log_density"]
    np.testing.assert_array_equal(out.index, index)
    np.testing.assert_array_equal(out["label"], bm.predict(reference, data))
    np.testing.assert_allclose(out[["p0", "p1", "p2"]], bm.predict_proba(reference, data), 1e-12)
    np.testing.assert_allclose(out["log_density"], bm.log_density(reference, data), 1e-12)
    drawn = predictions(reference, df[["a", "b"]], temperature=1, seed=5, probabilities=False)
    expected = bm.predict(reference, data, temperature=1, seed=5)
    np.testing.assert_array_equal(drawn.compute()["label"], expected)
    joined = dd.concat([df[["id"]], drawn], axis=1).compute()  # aligned partitions
    np.testing.assert_array_equal(joined["id"], index)
    some = df[df["a"] > 1e9]  # every partition empty, as filters leave them
    assert len(predictions(reference, some, columns=["a", "b"]).compute()) == 0
    x = da.from_array(data, chunks=(700, 1))
    np.testing.assert_array_equal(
        predictions(reference, x, temperature=1, seed=5).compute()["label"], expected
    )
    frame.loc[index[1500], "b"] = np.nan
    bad = predictions(reference, dd.from_pandas(frame, npartitions=4), columns=["a", "b"])
    with pytest.raises(bm.DataError, match=r"partition 3 .*'b'"):
        bad.compute()
    with pytest.raises(bm.SpecError, match="takes a Dask DataFrame or array, got ndarray"):
        predictions(reference, data)
    # A fit on named columns reads them by name, among others, as bm.predict does.
    named = fit_em(frame[["a", "b"]].iloc[:300], 3, n_init=1, max_iter=3)
    np.testing.assert_array_equal(
        predictions(named, dd.from_pandas(frame[["b", "id", "a"]].iloc[:300], 2)).compute()[
            "label"
        ],
        bm.predict(named, frame.iloc[:300]),
    )


def test_a_dask_dataframes_unnamed_columns_are_left_out_with_a_warning():
    dd = pytest.importorskip("dask.dataframe")
    from bayesmix.distributed import DaskSource

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"Unnamed: 0": np.arange(20), "a": rng.normal(size=20), "b": 1.0})
    with pytest.warns(bm.DataWarning, match="the Dask DataFrame: left out 1 unnamed"):
        source = DaskSource(dd.from_pandas(frame, npartitions=2))
    assert source.columns == ["a", "b"]
    assert DaskSource(dd.from_pandas(frame, npartitions=2), columns=["Unnamed: 0"]).columns == [
        "Unnamed: 0"
    ]

"""Fits on Dask: a Dask array or DataFrame as a chunked source whose passes run on a cluster.

Each partition's sufficient statistics are computed where the partition lives, by the same
compiled E-step kernel as in memory (`bayesmix.sources.chunk_stats`), and summed by Dask in a
tree reduction; only the small parameters travel to the workers and only the statistics come
back. So `fit_em(dask_array, k)` is the in-memory fit, computed elsewhere: on the threads of
this process (Dask's default scheduler), a `distributed.LocalCluster`, or any
`dask.distributed` cluster whose `Client` is active::

    from dask.distributed import Client
    import dask.dataframe as dd
    from bayesmix.infer.em import fit_em

    client = Client("tcp://scheduler:8786")           # or Client(LocalCluster(...))
    df = dd.read_parquet("s3://bucket/events/*.parquet", columns=["x", "y"]).persist()
    fit = fit_em(df, k=8, covariance="diag", priors="auto")

Every worker needs bayesmix and JAX installed; `.persist()` keeps the data in the workers'
memory between the passes (else each EM iteration reads it again). When the calling process
computes in float64 (`jax_enable_x64`), the workers' kernels do too.

`predictions(fit, df)` classifies the rows where they live too: a lazy Dask DataFrame of
labels and membership probabilities with the data's partitions and index, to join to other
columns and write by Dask (`bayesmix.stream.predict_to_parquet` instead streams every row
through this process into one file)::

    out = predictions(fit, df)                                 # label, p0, ..., p7
    dd.concat([df[["id"]], out], axis=1).to_parquet("s3://bucket/labelled/")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np

from .data import default_columns
from .errors import DataError, SpecError
from .infer.estep import Stats, accumulator_dtype
from .model import Params
from .sources import Chunk, Scan, Source, _merge, _moments, check_chunk, chunk_stats, finish_scan

__all__ = ["DaskSource", "predictions"]


def _tree(items: list, combine: Callable) -> object:
    """A pairwise tree of delayed `combine` calls over delayed items."""
    import dask

    while len(items) > 1:
        pairs = [
            dask.delayed(combine)(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
            for i in range(0, len(items), 2)
        ]
        items = pairs
    return items[0]


def _values(part: object, where: str, first_row: int, labels: list[str]) -> np.ndarray:
    """A partition (ndarray or pandas DataFrame) -> validated (rows, D) float64."""
    if hasattr(part, "columns"):  # pandas
        values = part.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = np.asarray(part, np.float64)
        values = values[:, None] if values.ndim == 1 else values
    check_chunk(values, where, first_row, labels)
    return values


def _part_moments(part, where, first_row, columns):
    values = _values(part, where, first_row, columns)
    return (_moments(values), [len(values)]) if len(values) else (None, [0])


def _merge_scans(a, b):
    m = a[0] if b[0] is None else b[0] if a[0] is None else _merge(a[0], b[0])
    return m, a[1] + b[1]


def _part_take(part, where, first_row, columns, rows):
    return _values(part, where, first_row, columns)[rows - first_row]


def _part_stats(part, where, first_row, columns, params, c, moment, block, dtype, pad_to, x64):
    values = _values(part, where, first_row, columns)
    with jax.enable_x64(x64):
        return chunk_stats(
            params, c, values, moment=moment, block=block, dtype=dtype, pad_to=pad_to
        )


def _add(a: Stats, b: Stats) -> Stats:
    return jax.tree.map(np.add, a, b)


class DaskSource(Source):
    """A Dask array (N, D) or (N,), or a Dask DataFrame (every numeric column, or `columns`),
    whose partitions are the chunks. `chunk_rows` rechunks an array's rows."""

    def __init__(
        self, data: object, *, columns: Sequence[str] | None = None, chunk_rows: int | None = None
    ):
        if hasattr(data, "columns"):  # a Dask DataFrame
            from pandas.api.types import is_numeric_dtype

            names = [str(c) for c in data.columns]
            cols = list(columns or default_columns(names, "the Dask DataFrame"))
            for col in cols:
                if col not in names:
                    raise DataError(
                        f"the Dask DataFrame has no column {col!r}; its columns are {names}"
                    )
                if not is_numeric_dtype(data[col].dtype):
                    raise DataError(
                        f"column {col!r} of the Dask DataFrame holds {data[col].dtype}, not "
                        "numbers; choose numeric columns (columns=[...])"
                    )
            self.name, self.columns = "the Dask DataFrame", cols
            self._array = False
            self._parts = list(data[cols].to_delayed())
            self._offsets = None  # partition lengths are learned by the scan
        else:
            if columns is not None:
                raise SpecError("columns applies to DataFrames; select array columns yourself")
            if data.ndim == 1:
                data = data[:, None]
            if data.ndim != 2 or not np.issubdtype(data.dtype, np.number):
                raise DataError(
                    f"the Dask array must be a numeric table (rows, columns), got shape "
                    f"{data.shape} and dtype {data.dtype}"
                )
            if any(np.isnan(n) for n in data.chunks[0]):
                raise DataError(
                    "the Dask array has unknown chunk sizes; call x.compute_chunk_sizes() first"
                )
            data = data.rechunk({0: chunk_rows or data.chunks[0], 1: -1})
            self.name = "the Dask array"
            self.columns = [str(j) for j in range(data.shape[1])]
            self._array = True
            self._parts = list(data.to_delayed().ravel())
            self._offsets = np.concatenate([[0], np.cumsum(data.chunks[0])]).astype(int)
        self.chunk_rows = int(chunk_rows or 1024)

    @property
    def labels(self) -> list[str]:
        if self._array:
            return [f"column {c}" for c in self.columns]
        return [f"column {c!r}" for c in self.columns]

    @property
    def names(self) -> tuple[str, ...] | None:
        return None if self._array else tuple(self.columns)

    def _where(self, i: int) -> tuple[str, int]:
        if self._offsets is None:
            return f"{self.name}, partition {i + 1} (rows counted within it)", 0
        lo, hi = self._offsets[i], self._offsets[i + 1]
        return f"{self.name}, partition {i + 1} (rows {lo + 1}-{hi})", int(lo)

    def _pieces(self) -> Iterator[tuple[str, np.ndarray]]:
        raise NotImplementedError  # chunks() is overridden

    def chunks(self) -> Iterator[Chunk]:
        """The partitions, computed one at a time (for streamed prediction)."""
        import dask

        first = 0
        for i, part in enumerate(self._parts):
            where, _ = self._where(i)
            values = _values(dask.compute(part)[0], where, first, self.labels)
            yield Chunk(values, first, where)
            first += len(values)

    def scan(self) -> Scan:
        import dask

        parts = [
            dask.delayed(_part_moments)(p, *self._where(i), self.labels)
            for i, p in enumerate(self._parts)
        ]
        moments, lengths = dask.compute(_tree(parts, _merge_scans))[0]
        if moments is None:
            raise DataError(f"{self.name} holds no rows; give at least two rows of numbers")
        self._offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
        return finish_scan(moments, self.name, self.labels)

    def take(self, rows: np.ndarray) -> np.ndarray:
        import dask

        if self._offsets is None:
            self.scan()
        out = []
        for i, p in enumerate(self._parts):
            lo, hi = np.searchsorted(rows, self._offsets[i : i + 2])
            if hi > lo:
                out.append(dask.delayed(_part_take)(p, *self._where(i), self.labels, rows[lo:hi]))
        return np.concatenate(dask.compute(*out))

    def stats(
        self, params: Params, c: np.ndarray, *, moment: str, block: int, dtype: np.dtype
    ) -> Stats:
        import dask

        params = jax.tree.map(np.asarray, params)
        x64 = accumulator_dtype() == np.float64
        pad = self.chunk_rows
        parts = [
            dask.delayed(_part_stats)(
                p, *self._where(i), self.labels, params, c, moment, block, dtype, pad, x64
            )
            for i, p in enumerate(self._parts)
        ]
        return dask.compute(_tree(parts, _add))[0]


def _part_predictions(
    part, name, labels, fit, temperature, seed, offsets, x64, probabilities, log_density,
    partition_info=None,
):  # fmt: skip
    """A partition's `predictions` (pandas DataFrame with the partition's index)."""
    import pandas as pd

    from .predict import classify

    i = partition_info["number"] if partition_info else 0
    first = 0 if offsets is None else int(offsets[i])
    where = f"{name}, partition {i + 1}" + (
        "" if offsets is None else f" (rows {first + 1}-{offsets[i + 1]})"
    )
    values = _values(part, where, first, labels)
    if len(values):
        with jax.enable_x64(x64):
            comp, probs, logd = classify(fit, values, temperature, seed, first)
    else:  # an empty partition (e.g. after a filter)
        dtype = np.float64 if x64 else np.float32
        comp, probs, logd = np.zeros(0, np.int32), np.zeros((0, fit.k), dtype), np.zeros(0, dtype)
    out = {"label": comp.astype(np.int32)}
    if probabilities:
        out.update({f"p{j}": probs[:, j] for j in range(fit.k)})
    if log_density:
        out["log_density"] = logd
    return pd.DataFrame(out, index=part.index)


def predictions(
    fit: object,
    data: object,
    *,
    columns: Sequence[str] | None = None,
    probabilities: bool = True,
    log_density: bool = False,
    temperature: float = 0.0,
    seed: int = 0,
):
    """The rows of a Dask DataFrame or array classified where they live: a lazy Dask
    DataFrame with the data's partitions and index, of the columns `predict_to_parquet`
    writes: `label` (int32; the MAP component at `temperature` 0, else a draw, the same as
    `bm.predict(fit, rows, temperature=..., seed=...)` in memory), `p0` ... `p{K-1}` (with
    `probabilities`) and `log_density` (with `log_density`). fit: a MAP fit, a loaded model
    or a fitted BayesianMixture; columns: the data's columns to read (default: the fit's).
    A bad partition (NaN, text) raises DataError naming it when the result is computed.
    Draws at temperature > 0 count the partitions' rows first (a pass over the data)."""
    import dask.dataframe as dd
    import pandas as pd

    from .predict import check_draw
    from .result import as_fit
    from .stream import model_source

    fit = as_fit(fit)
    temperature, seed = check_draw(temperature, seed)
    source = model_source(fit, data, columns=columns)  # checks the columns and their types
    if not isinstance(source, DaskSource):
        raise SpecError(
            f"predictions takes a Dask DataFrame or array, got {type(data).__name__}; "
            "use bm.predict / bm.predict_proba in memory, or predict_to_parquet"
        )
    if source._array:
        x = data[:, None] if data.ndim == 1 else data
        frame = dd.from_dask_array(x.rechunk({1: -1}), columns=source.columns)
    else:
        frame = data[source.columns]
    offsets = None
    if temperature > 0:  # the draws depend on each row's number in the whole table
        lengths = frame.map_partitions(len).compute()
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    meta = {"label": np.zeros(0, np.int32)}
    if probabilities:
        meta.update({f"p{j}": np.zeros(0, dtype) for j in range(fit.k)})
    if log_density:
        meta["log_density"] = np.zeros(0, dtype)
    return frame.map_partitions(
        _part_predictions,
        source.name,
        source.labels,
        fit,
        temperature,
        seed,
        offsets,
        bool(jax.config.jax_enable_x64),
        probabilities,
        log_density,
        meta=pd.DataFrame(meta),
        align_dataframes=False,
    )

"""Prediction at scale: membership of every row of chunked data, written to Parquet.

`predict_to_parquet` reads any source `fit_em` reads (arrays, memory maps, Parquet / CSV files,
Dask collections) one chunk at a time, classifies each chunk with one compiled kernel (chunks
are padded to one size, so it compiles once) and appends it to a Parquet file, so memory stays
at two chunks (the next one is read meanwhile) whatever the number of rows. The file is
written under a temporary name and renamed when complete (`write_tables`, which `bayesmix
predict` uses for CSV too): an error (a bad chunk, a truncated input) leaves no partial output.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._jit import sized_jit
from .data import opener
from .enumerate import row_number
from .errors import DataError, SpecError
from .io import csv_cell, dictionary_columns
from .predict import check_draw, membership
from .result import MAPResult, as_fit
from .sources import (
    BYTES_PER_VALUE,
    FIXED_BYTES,
    ArraySource,
    Source,
    as_source,
    check_columns,
    is_paths,
    rows_for_budget,
    select_columns,
)

__all__ = ["budget_rows", "kept_columns", "model_source", "predict_to_parquet", "write_tables"]


#: The memory of a prediction's chunk (inputs and outputs) when none is given.
PREDICT_BUDGET = 256 << 20


@sized_jit
def _membership(params, x, seed, temperature, first_row):
    """`predict.membership` with the probabilities component by component (K, N), so that
    each Parquet column is a contiguous row."""
    labels, probs, log_density = membership(params, x, seed, temperature, first_row)
    return labels, probs.T, log_density


def predict_to_parquet(
    fit: MAPResult,
    data: object,
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
    chunk_rows: int | None = None,
    memory_budget: int | None = None,
    probabilities: bool = True,
    log_density: bool = False,
    dtype: str = "float32",
    temperature: float = 0.0,
    seed: int = 0,
    keep: Sequence[str] | None = None,
) -> int:
    """Write the membership of every row of `data` to the Parquet file `path`; return the
    number of rows written.

    Columns written (named as by `bayesmix predict` and the HTTP service): `label` (int32: the
    MAP component at `temperature` 0; at 1 a draw from p(z_n | x_n, globals), whatever the
    chunks those of `bm.predict(fit, data, temperature=1, seed=seed)` in float64), `p0` ...
    `p{K-1}` (membership probabilities, with `probabilities`) and `log_density` (log p(x_n),
    with `log_density`), one row per input row in input order; first the columns `keep` of
    the Parquet or CSV files `data` (as stored; CSV as text), e.g. an id to join by.
    `dtype` is the precision of the computation and of the written probabilities ("float32"
    or "float64").
    """
    import pyarrow as pa

    fit = as_fit(fit)
    if memory_budget is not None and chunk_rows is None:
        chunk_rows = budget_rows(memory_budget, fit.params.locs.shape[-1], fit.k)
        memory_budget = None
    temperature, seed = check_draw(temperature, seed)
    source = model_source(fit, data, columns=columns, chunk_rows=chunk_rows, budget=memory_budget)
    dt = np.dtype(dtype)
    params = jax.tree.map(lambda v: jnp.asarray(v, dt), fit.params)
    names = ["label"]
    if probabilities:
        names += [f"p{j}" for j in range(fit.k)]
    if log_density:
        names.append("log_density")
    prepend = kept_columns(source, keep, names)

    def tables():
        for chunk in source.chunks():
            n, d = chunk.values.shape
            padded = np.zeros((max(n, source.chunk_rows), d), dt)
            padded[:n] = chunk.values
            args = (jnp.asarray(padded), seed, temperature, row_number(chunk.first_row))
            comp, prob, logp = jax.device_get(
                _membership(params, *args, work=padded.shape[0] * fit.k)
            )
            arrays = [pa.array(comp[:n])]
            if probabilities:
                arrays += [pa.array(prob[j, :n]) for j in range(fit.k)]
            if log_density:
                arrays.append(pa.array(logp[:n]))
            yield prepend(pa.Table.from_arrays(arrays, names=names))

    return write_tables(path, tables(), f"{source.name} holds no rows; nothing to predict")


def kept_columns(
    source: Source, keep: Sequence[str] | None, written: Sequence[str]
) -> Callable[[object], object]:
    """prepend(table) -> the next table.num_rows rows of the columns `keep` of the files
    `source` reads (as stored; CSV as text), then `table`'s columns: a prediction's rows with
    their ids. Without `keep`, prepend returns the table."""
    import pyarrow as pa

    if not keep:
        return lambda table: table
    keep = check_columns(keep)
    if set(keep) & set(written):
        raise SpecError(f"keep {keep} names columns of the output's own {list(written)}")
    if not hasattr(source, "passthrough"):
        dask = "; for Dask, bayesmix.distributed.predictions keeps the index to join by"
        raise SpecError(
            f"keep copies columns of Parquet or CSV files; {source.name} is not one (add the "
            "columns to the predictions by row order"
            + (f"){dask}" if "Dask" in source.name else ")")
        )
    tables = source.passthrough(keep)
    held: list = []

    def prepend(table):
        rows = sum(t.num_rows for t in held)
        while rows < table.num_rows:
            held.append(next(tables))
            rows += held[-1].num_rows
        whole = pa.concat_tables(held) if len(held) > 1 else held[0]
        held[:] = [whole.slice(table.num_rows)]
        kept = whole.slice(0, table.num_rows)
        return pa.Table.from_arrays(kept.columns + table.columns, keep + table.column_names)

    return prepend


def budget_rows(budget: int, d: int, k: int) -> int:
    """Rows per chunk of a prediction within `budget` bytes: the budget covers the outputs
    too, 64 bytes per row and component (the kernel's (N, K) float64 intermediates, the
    probabilities, their Arrow columns) besides the D inputs (measured: 6.3e6 rows under 32
    and 128 MiB, K = 2 and 8, at 16 bytes per component the peak grew 3-5 MiB past the budget)."""
    columns = d + (64 * k + 16) // BYTES_PER_VALUE + 1
    try:
        return rows_for_budget(budget, columns)
    except SpecError:
        need = math.ceil((FIXED_BYTES + 1024 * BYTES_PER_VALUE * columns) / 2**20)
        raise SpecError(
            f"memory_budget of {budget / 2**20:.3g} MiB is too small to classify {d} columns "
            f"into {k} components; give at least {need} MiB"
        ) from None


def model_source(
    fit: MAPResult,
    data: object,
    *,
    columns: Sequence[str] | None = None,
    chunk_rows: int | None = None,
    budget: int | None = None,
) -> Source:
    """`data` as a chunked source (`bayesmix.sources.as_source`; an array is read in chunks
    too) of the model's number of columns, or DataError: `columns`, else, where the data
    name theirs (data frames, files), those the fit was fitted on. Without `chunk_rows` or
    `budget`, chunks of `PREDICT_BUDGET` bytes, outputs included."""
    d = fit.params.locs.shape[-1]
    if chunk_rows is None and budget is None:
        chunk_rows = budget_rows(PREDICT_BUDGET, d, fit.k)
    if columns is None and fit.columns is not None and (hasattr(data, "columns") or is_paths(data)):
        columns = list(fit.columns)  # read by the names it was fitted on, as bm.predict does
    data, columns = select_columns(data, columns)
    source = as_source(data, columns=columns, chunk_rows=chunk_rows, budget=budget)
    if source is None:
        source = ArraySource(data, chunk_rows=chunk_rows)
    if not isinstance(source, Source):
        raise DataError(f"cannot read {type(data).__name__} in chunks")
    if len(source.columns) != d:
        raise DataError(
            f"{source.name} has {len(source.columns)} columns but the model was fitted on {d}"
        )
    return source


def _needs_quotes(table) -> bool:
    """Whether a CSV of `table` needs quotes (Arrow's "needed" quotes every text value): a
    text value with a comma, quote, line break or edge blanks (as `io.csv_cell`), or a column
    of another non-numeric type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for column in table.columns:
        kind = column.type
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            if pc.any(pc.match_substring_regex(column, r'[,"\r\n]|^\s|\s$')).as_py():
                return True
        elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                  or pa.types.is_boolean(kind)):  # fmt: skip
            return True
    return False


def write_tables(
    path: str | os.PathLike[str], tables: Iterable, empty: str, *, csv: bool = False
) -> int:
    """Write the Arrow tables (one schema) one after the other to `path`: a Parquet file, or
    with `csv` a CSV file with a header row (values in full precision; "-": standard output;
    gzip or bzip2 compressed where the name ends in .gz or .bz2).
    A file is written atomically (a temporary file renamed at the end: an error leaves no file,
    and an earlier file intact). Returns the number of rows; DataError(`empty`) when there are
    none."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    to_stdout = csv and str(path) == "-"
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    rows, writer = 0, None
    try:
        for table in tables:
            if writer is None and csv:
                writer = sys.stdout.buffer if to_stdout else opener(path)(tmp, "wb")
                writer.write((",".join(map(csv_cell, table.column_names)) + "\n").encode())
            elif writer is None:
                options = {"use_dictionary": dictionary_columns(table.schema)}
                writer = pq.ParquetWriter(tmp, table.schema, **options)
            if csv:
                buf = io.BytesIO()
                quoting = "needed" if _needs_quotes(table) else "none"
                pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=False,
                                                             quoting_style=quoting))  # fmt: skip
                writer.write(buf.getbuffer())
            else:
                writer.write_table(table)
            rows += table.num_rows
        if writer is None:
            raise DataError(empty)
        if to_stdout:
            writer.flush()
        else:
            writer.close()
            os.replace(tmp, path)
        writer = None
    finally:
        if writer is not None and not to_stdout:
            writer.close()
        if not to_stdout and tmp.exists():
            tmp.unlink()
    return rows

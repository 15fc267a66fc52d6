"""Data read in chunks: arrays (and memory maps), Parquet and CSV files, for out-of-core fits.

A source yields the data as validated (rows, D) float64 chunks, each with its place (file,
chunk number, first global row) for error messages, and holds at most two chunks (the
caller's, and the next, read by a background thread meanwhile: `bayesmix._threads.prefetch`).
Fits make one pass over it per EM iteration (`Source.stats`: each chunk's sufficient
statistics by the compiled E-step kernel, its rows split between the cores, summed in
float64), plus a first pass (`Source.scan`: row count, column means and standard deviations,
validation) and one to gather the initialization's rows (`Source.take`).
`bayesmix.distributed.DaskSource` runs the same passes on a Dask cluster.

Parquet and CSV files are read with pyarrow (the `bayesmix[scale]` extra). Memory: about
6 x 8 x D bytes per row of `chunk_rows` (the current chunk in float64 and its padded copy,
which the device reads in place; the next chunk in the reader's buffer and in float64, pieces
and whole; slack); `rows_for_budget` turns a memory budget into `chunk_rows`. A Parquet file
is read one row group at a time, so its row groups must fit in the budget too.
"""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._threads import cores, prefetch, thread_map
from .data import (
    CSV_SUFFIXES,
    LARGE,
    MAX_ABS,
    as_data,
    by_name,
    column_names,
    csv_header,
    data_files,
    default_columns,
    fit_frame,
    not_a_number,
    other_format,
    separator_hint,
)
from .errors import DataError, SpecError
from .infer.estep import RUNS, Stats, estep, row_ranges
from .model import Params

__all__ = [
    "ArraySource",
    "CSVSource",
    "Chunk",
    "ParquetSource",
    "Scan",
    "Source",
    "as_matrix",
    "as_source",
    "chunk_stats",
    "is_paths",
    "open_source",
    "rows_for_budget",
]

#: Rows per chunk when neither chunk_rows nor a memory budget is given: 32 MB of float64.
DEFAULT_CHUNK_BYTES = 1 << 25
#: Bytes per value of a chunk while it is processed (the float64 chunk and its padded copy,
#: which the device reads in place; the next chunk's reader buffer, float64 pieces and their
#: concatenation; slack), and the fixed cost of the E-step's block intermediates.
BYTES_PER_VALUE = 6 * 8
FIXED_BYTES = 16 << 20


class Chunk(NamedTuple):
    """values: (rows, D) float64, validated; first_row: global index of its first row;
    where: its place in words ("data.parquet, chunk 3 (rows 200001-300000)")."""

    values: np.ndarray
    first_row: int
    where: str


class Scan(NamedTuple):
    """What the first pass learns: rows, column means and standard deviations (D,)."""

    rows: int
    mean: np.ndarray
    sd: np.ndarray


class _Moments(NamedTuple):
    """Chan et al.'s mergeable (count, mean, M2) per column, and `same`: each column's value
    where every row seen holds the same one, else NaN."""

    n: int
    mean: np.ndarray
    m2: np.ndarray
    same: np.ndarray


def _moments(x: np.ndarray) -> _Moments:
    """The moments of one validated chunk (rows, D), from sums about its first row taken by
    matrix products (numpy's reductions over the rows of a narrow array ran 5-10x slower)."""
    n = len(x)
    dev = x - x[0]
    s1 = np.ones(n) @ dev
    s2 = np.einsum("ij,ij->j", dev, dev)
    mean = x[0] + s1 / n
    return _Moments(n, mean, np.maximum(s2 - s1 * s1 / n, 0.0), np.where(s2 == 0, x[0], np.nan))


def _merge(a: _Moments, b: _Moments) -> _Moments:
    n = a.n + b.n
    delta = b.mean - a.mean
    return _Moments(
        n,
        a.mean + delta * (b.n / n),
        a.m2 + b.m2 + delta**2 * (a.n * b.n / n),
        np.where(a.same == b.same, a.same, np.nan),
    )


def check_chunk(values: np.ndarray, where: str, first_row: int, names: Sequence[str]) -> None:
    """Raise DataError naming the place, global row and column (`names`: "column 'x'") of the
    first non-finite or too-large value of a chunk (rows, D)."""
    # Two passes without temporaries in the common case (NaN fails both comparisons).
    if values.size == 0 or (-MAX_ABS <= values.min() and values.max() <= MAX_ABS):
        return
    ok = np.isfinite(values)
    if not ok.all():
        i, j = np.argwhere(~ok)[0]
        raise DataError(
            f"{where} has a non-finite or missing value ({values[i, j]}) in row "
            f"{first_row + i + 1}, {names[j]} ({int((~ok).sum())} in this chunk); "
            "remove or impute those rows"
        )
    big = np.abs(values) > MAX_ABS
    if big.any():
        i, j = np.argwhere(big)[0]
        raise DataError(
            f"{where} has a value too large to fit reliably ({values[i, j]:.3g}) in row "
            f"{first_row + i + 1}, {names[j]}; values must be below {MAX_ABS:.0e} in "
            "magnitude: rescale the data"
        )


def finish_scan(m: _Moments, name: str, names: Sequence[str]) -> Scan:
    """Scan from merged moments, refusing too few rows and constant columns (as `as_data`)."""
    if m.n < 2:
        raise DataError(f"{name} has {m.n} rows; a mixture needs at least two data points")
    for j in range(len(names)):
        if not np.isnan(m.same[j]):
            raise DataError(
                f"{names[j]} of {name} is constant (every value is {m.same[j]:g}); it "
                "carries no information about clusters and makes the scale degenerate: drop "
                "that column"
            )
    return Scan(int(m.n), m.mean, np.sqrt(m.m2 / m.n))


def _bucket(rows: int, chunk_rows: int) -> int:
    """Padded size of a chunk, so that a fit compiles its kernel a handful of times:
    chunk_rows for chunks of more than chunk_rows / 8 rows (all but the last, typically),
    else the next power of two."""
    pow2 = 1 << max(0, (rows - 1).bit_length())
    return chunk_rows if chunk_rows >= rows > chunk_rows // 8 else pow2


def chunk_stats(
    params: Params,
    c: np.ndarray,
    values: np.ndarray,
    *,
    moment: str,
    block: int,
    dtype: np.dtype,
    pad_to: int,
    workers: int = 1,
) -> Stats:
    """E-step statistics of one chunk (rows, D), as float64 NumPy arrays; its rows split
    between up to `workers` threads (`bayesmix.infer.estep.row_ranges`)."""
    rows, d = values.shape
    k = params.weights.shape[-1]
    shape, dtype = (_bucket(rows, pad_to), d), np.dtype(dtype)
    # 64-byte aligned, so that the CPU device reads it in place rather than copying it.
    raw = np.zeros(math.prod(shape) * dtype.itemsize + 64, np.uint8)
    offset = -raw.ctypes.data % 64
    padded = raw[offset : offset + math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)
    padded[:rows] = values
    xd, cd = jax.device_put(padded, may_alias=True), jnp.asarray(c)

    def part(r: tuple[int, int]) -> Stats:
        lo, hi = r
        st = estep(params, xd, hi, cd, lo, moment=moment, block=block, work=xd.size * k * RUNS)
        return jax.tree.map(lambda v: np.asarray(v, np.float64), st)

    parts = thread_map(part, row_ranges(rows, k), workers)
    return jax.tree.map(lambda *v: sum(v[1:], v[0]), *parts)


def rows_for_budget(budget: int, d: int) -> int:
    """Rows per chunk so that a chunk of D columns is processed within `budget` bytes."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        raise SpecError(f"memory_budget must be a number of bytes > 0, got {budget!r}")
    rows = (budget - FIXED_BYTES) // (BYTES_PER_VALUE * d)
    if rows < 1024:
        need = FIXED_BYTES + 1024 * BYTES_PER_VALUE * d
        raise SpecError(
            f"memory_budget of {budget / 2**20:.3g} MiB is too small for {d} columns; give at "
            f"least {math.ceil(need / 2**20)} MiB"
        )
    return int(1 << int(math.log2(rows)))


def _return_freed_memory() -> None:
    """Have glibc's malloc give blocks of 128 KiB or more back to the system when they are
    freed, for the rest of the process (a fit under a memory budget asked for it). By default
    glibc raises that threshold to the size of each large block freed (up to 32 MiB), after
    which chunk-sized buffers come from its heaps and stay resident once freed: measured, the
    peak of the same fit under a 32 MiB budget varied from 8 to 35 MiB between runs that way,
    13 to 18 MiB with the threshold fixed. Does nothing where the C library is not glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 << 10)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


class Source:
    """Chunked data. Subclasses implement `_pieces()`, yielding (file or name, float64 array
    (rows, D)) in row order; this class cuts them into chunks of `chunk_rows` rows (never
    spanning two files), validates them and runs the passes of a fit."""

    name: str = "data"
    columns: list[str]
    chunk_rows: int

    @property
    def labels(self) -> list[str]:
        """The columns as messages name them."""
        return [f"column {c!r}" for c in self.columns]

    @property
    def names(self) -> tuple[str, ...] | None:
        """The columns' names (None where they are only positions: arrays)."""
        return tuple(self.columns)

    def _pieces(self) -> Iterator[tuple[str, np.ndarray]]:
        raise NotImplementedError

    def _set_chunk_rows(self, chunk_rows: int | None, budget: int | None, d: int) -> None:
        if chunk_rows is not None and budget is not None:
            raise SpecError("give chunk_rows or memory_budget, not both")
        if chunk_rows is None:
            chunk_rows = (
                rows_for_budget(budget, d) if budget is not None else DEFAULT_CHUNK_BYTES // (8 * d)
            )
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 2:
            raise SpecError(f"chunk_rows must be a whole number >= 2, got {chunk_rows!r}")
        self.chunk_rows = max(2, int(chunk_rows))
        self.budget = budget
        if budget is not None:
            _return_freed_memory()
        self._compiled: set[tuple] = set()  # E-step programs run (`stats`)
        self._scan: Scan | None = None  # `scan`'s result, once made

    def chunks(self) -> Iterator[Chunk]:
        """Validated chunks of at most `chunk_rows` rows, in row order (the next one read
        while the caller computes on the current one)."""
        return prefetch(self._chunks())

    def _chunks(self) -> Iterator[Chunk]:
        first, number = 0, 0
        pending: list[np.ndarray] = []
        held, label = 0, None

        def emit(values: np.ndarray) -> Chunk:
            nonlocal first, number
            number += 1
            where = f"{label}, chunk {number} (rows {first + 1}-{first + len(values)})"
            check_chunk(values, where, first, self.labels)
            out = Chunk(values, first, where)
            first += len(values)
            return out

        for name, piece in self._pieces():
            if name != label and pending:
                yield emit(np.concatenate(pending))
                pending, held = [], 0
            label = name
            while len(piece):
                take = min(len(piece), self.chunk_rows - held)
                pending.append(piece[:take])
                held += take
                piece = piece[take:]
                if held == self.chunk_rows:
                    yield emit(pending[0] if len(pending) == 1 else np.concatenate(pending))
                    pending, held = [], 0
        if pending:
            yield emit(np.concatenate(pending))

    def scan(self) -> Scan:
        """First pass: row count, column means and standard deviations; validates every chunk
        and refuses constant columns. Made once per source (a source stands for fixed data,
        as every pass of a fit assumes): a second call, e.g. the fit after the command line
        counted the rows, reads nothing."""
        if self._scan is None:
            total = None
            for chunk in self.chunks():
                m = _moments(chunk.values)
                total = m if total is None else _merge(total, m)
            if total is None:
                raise DataError(f"{self.name} holds no rows; give at least two rows of numbers")
            self._scan = finish_scan(total, self.name, self.labels)
        return self._scan

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at the sorted global indices `rows`: (len(rows), D) float64."""
        out = []
        for chunk in self.chunks():
            lo, hi = np.searchsorted(rows, [chunk.first_row, chunk.first_row + len(chunk.values)])
            if hi > lo:
                out.append(chunk.values[rows[lo:hi] - chunk.first_row])
            if hi == len(rows):
                break
        return np.concatenate(out)

    def stats(
        self, params: Params, c: np.ndarray, *, moment: str, block: int, dtype: np.dtype
    ) -> Stats:
        """One E-step pass: the sum over chunks of their statistics (float64)."""
        total = None
        for chunk in self.chunks():
            # A chunk whose program is not compiled yet runs on one thread (compiled once).
            program = (
                _bucket(len(chunk.values), self.chunk_rows),
                np.dtype(dtype),
                params.weights.shape,
                moment,
                block,
            )
            st = chunk_stats(
                params, c, chunk.values, moment=moment, block=block, dtype=dtype,
                pad_to=self.chunk_rows, workers=cores() if program in self._compiled else 1,
            )  # fmt: skip
            self._compiled.add(program)
            total = st if total is None else jax.tree.map(np.add, total, st)
        return total


class ArraySource(Source):
    """An in-memory array or `np.memmap` (N, D) read in chunks (rows are converted to float64
    one chunk at a time, so a memory-mapped file is never loaded whole)."""

    def __init__(
        self,
        x: np.ndarray,
        *,
        chunk_rows: int | None = None,
        memory_budget: int | None = None,
        name: str = "data",
    ):
        x = np.asarray(x) if not isinstance(x, np.ndarray) else x
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise DataError(
                f"{name} must be a numeric table of shape (rows, columns), got an array of "
                f"shape {x.shape} and dtype {x.dtype}"
            )
        self.x, self.name = x, name
        self.columns = [str(j) for j in range(x.shape[1])]
        self._set_chunk_rows(chunk_rows, memory_budget, x.shape[1])

    @property
    def labels(self) -> list[str]:
        return [f"column {j}" for j in range(self.x.shape[1])]

    names = None

    def _pieces(self) -> Iterator[tuple[str, np.ndarray]]:
        for start in range(0, len(self.x), self.chunk_rows):
            yield self.name, np.asarray(self.x[start : start + self.chunk_rows], np.float64)


def _arrow_error(path: str, exc: Exception, what: str = "") -> DataError:
    return DataError(
        f"{path} is not a readable Parquet file{what} (truncated or corrupt: {exc}); "
        "re-export it or remove it from the inputs"
    )


class ParquetSource(Source):
    """Parquet files read in chunks (every numeric column, or `columns`)."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        columns: Sequence[str] | None = None,
        chunk_rows: int | None = None,
        memory_budget: int | None = None,
    ):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.paths = [os.fspath(p) for p in paths]
        self.name = self.paths[0] if len(self.paths) == 1 else f"{len(self.paths)} Parquet files"
        files = []

        def names(path: str) -> list[str]:
            try:
                files.append(pq.ParquetFile(path))
            except (pa.ArrowException, OSError) as exc:
                raise _arrow_error(path, exc) from None
            return files[-1].schema_arrow.names

        self.columns = _file_columns(self.paths, columns, names)
        for path, pf in zip(self.paths, files, strict=True):
            for col in self.columns:
                t = pf.schema_arrow.field(col).type
                if not (
                    pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
                ):
                    raise DataError(
                        f"{path}: column {col!r} holds {t}, not numbers; choose numeric columns "
                        "(columns=[...]; --columns on the command line)"
                    )
        self._meta = [pf.metadata for pf in files]
        self._set_chunk_rows(chunk_rows, memory_budget, len(self.columns))
        if memory_budget is not None:
            self._check_row_groups(memory_budget)

    def _check_row_groups(self, budget: int) -> None:
        for path, meta in zip(self.paths, self._meta, strict=True):
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                size = rg.num_rows * len(self.columns) * 8
                if size > budget // 4:
                    raise DataError(
                        f"{path}: row group {g + 1} holds {size / 2**20:.1f} MiB of values, more "
                        f"than a quarter of the memory budget ({budget / 2**20:.1f} MiB), and "
                        "Parquet is read a row group at a time; rewrite the file with smaller "
                        "row groups (pyarrow.parquet.write_table(table, path, row_group_size="
                        f"{max(1024, budget // (32 * len(self.columns)))})) or raise the budget"
                    )

    def _pieces(self) -> Iterator[tuple[str, np.ndarray]]:
        for path, table in self._tables(self.columns):
            for start in range(0, table.num_rows, self.chunk_rows):
                yield path, _to_matrix(table.slice(start, self.chunk_rows))

    def _tables(self, columns: list[str]) -> Iterator[tuple[str, object]]:
        """(path, Arrow table of `columns`): one row group at a time, in row order."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        for path in self.paths:
            # One row group at a time, by a fresh reader per pass: measured, a reader's
            # iter_batches keeps up to the whole file resident.
            try:
                pf = pq.ParquetFile(path)
            except (pa.ArrowException, OSError) as exc:
                raise _arrow_error(path, exc) from None
            done = 0
            for g in range(pf.metadata.num_row_groups):
                try:
                    table = pf.read_row_group(g, columns=columns, use_threads=False)
                except (pa.ArrowException, OSError) as exc:
                    where = f" in row group {g + 1}, after row {done}"
                    raise _arrow_error(path, exc, where) from None
                yield path, table
                done += table.num_rows
                del table

    def passthrough(self, columns: Sequence[str]) -> Iterator:
        """Arrow tables of `columns` (as stored) in row order: other columns to copy beside
        the predictions of the rows."""
        schemas = (m.schema.to_arrow_schema().names for m in self._meta)
        _file_columns(self.paths, columns, dict(zip(self.paths, schemas, strict=True)).get)
        return (table for _, table in self._tables(list(columns)))


def _to_matrix(batch) -> np.ndarray:
    """An Arrow table or record batch of numeric columns -> (rows, D) float64 (nulls: NaN)."""
    import pyarrow as pa

    out = np.empty((batch.num_rows, batch.num_columns), np.float64)
    for j, col in enumerate(batch.columns):
        if pa.types.is_decimal(col.type):  # exact decimals (databases' NUMERIC) as floats
            col = col.cast(pa.float64())
        out[:, j] = col.to_numpy(zero_copy_only=False)
    return out


class CSVSource(Source):
    """CSV files with a header row, read in chunks (every column, or `columns`)."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        columns: Sequence[str] | None = None,
        chunk_rows: int | None = None,
        memory_budget: int | None = None,
    ):
        self.paths = [os.fspath(p) for p in paths]
        self.name = self.paths[0] if len(self.paths) == 1 else f"{len(self.paths)} CSV files"
        self.columns = _file_columns(self.paths, columns, csv_header)
        self._set_chunk_rows(chunk_rows, memory_budget, len(self.columns))

    def _pieces(self) -> Iterator[tuple[str, np.ndarray]]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        block = int(min(max(self.chunk_rows * 16 * len(self.columns), 1 << 16), 1 << 30))
        for path in self.paths:
            done = 0
            try:  # opening reads the first block, so it can fail like any read
                reader = pcsv.open_csv(
                    path,
                    read_options=pcsv.ReadOptions(block_size=block),
                    convert_options=pcsv.ConvertOptions(
                        include_columns=self.columns,
                        column_types={c: pa.float64() for c in self.columns},
                    ),
                )
            except pa.ArrowInvalid as exc:
                raise _csv_error(path, self.columns, done, exc) from None
            except OSError as exc:  # a damaged .gz / .bz2 file
                raise DataError(f"{path} could not be read ({exc}); check the file") from None
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowInvalid as exc:
                    raise _csv_error(path, self.columns, done, exc) from None
                except OSError as exc:
                    raise DataError(
                        f"{path} could not be read after row {done} ({exc}); check the file"
                    ) from None
                done += batch.num_rows
                yield path, _to_matrix(batch)

    def passthrough(self, columns: Sequence[str]) -> Iterator:
        """Arrow tables of `columns` (as text) in row order: other columns to copy beside the
        predictions of the rows."""
        import pyarrow as pa
        import pyarrow.csv as pcsv

        _file_columns(self.paths, columns, csv_header)
        options = pcsv.ConvertOptions(
            include_columns=list(columns), column_types={c: pa.string() for c in columns}
        )

        def tables():
            for path in self.paths:
                try:
                    for batch in pcsv.open_csv(path, convert_options=options):
                        yield pa.Table.from_batches([batch])
                except (pa.ArrowInvalid, OSError) as exc:
                    raise DataError(f"{path} could not be read: {exc}") from None

        return tables()


def _file_columns(
    paths: Sequence[str], columns: Sequence[str] | None, names: Callable[[str], list[str]]
) -> list[str]:
    """The columns to read from every file: `columns`, or the first file's (`names(path)`:
    a file's columns); every file must have them, and without `columns` exactly them."""
    first = None
    for path in paths:
        _check_file(path)
        have = names(path)
        cols = list(columns) if columns is not None else default_columns(have, path, first is None)
        for col in cols:
            if col not in have:
                raise DataError(f"{path} has no column {col!r}; its columns are {have}")
        if first is not None and cols != first:
            raise DataError(f"{path} has columns {cols}; the first file has {first}")
        first = cols
    return first


def _csv_error(path: str, columns: list[str], done: int, exc: Exception) -> DataError:
    """Locate the first value that is not a number at or after data row `done`."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(skip_rows_after_names=done),
        convert_options=pcsv.ConvertOptions(
            include_columns=columns, column_types={c: pa.string() for c in columns}
        ),
    )
    row = done
    for batch in reader:
        for col in columns:
            values = batch.column(col).to_pylist()
            for i, v in enumerate(values):
                try:
                    float(v)
                except (TypeError, ValueError):
                    if v is None:
                        continue
                    return DataError(
                        f"{path}, line {row + i + 2} (row {row + i + 1}), column {col!r}: "
                        + not_a_number(v, separator_hint(columns))
                    )
        row += batch.num_rows
    return DataError(f"{path} could not be read as numbers after row {done}: {exc}")


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise DataError(f"file not found: {path}; check the path")
    if os.path.isdir(path):
        raise DataError(f"{path} is a folder; give the files in it")


def open_source(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    columns: Sequence[str] | None = None,
    chunk_rows: int | None = None,
    memory_budget: int | None = None,
) -> Source:
    """A chunked source for Parquet (.parquet, .pq) or CSV (.csv) files: one path, a list of
    paths of one kind, or a folder of Parquet files (read in name order).

    chunk_rows : rows per chunk (default: 32 MB of float64 values); or memory_budget, bytes
    that one chunk may take while it is processed (which also bounds Parquet row groups).
    """
    columns = check_columns(columns)
    if isinstance(paths, str | os.PathLike):
        paths = data_files(paths)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise DataError("no files given; pass at least one Parquet or CSV file")
    kinds = {_kind(p) for p in paths}
    if len(kinds) > 1:
        raise DataError(f"mixed file kinds {sorted(kinds)}; give Parquet files or CSV files")
    cls = ParquetSource if kinds == {"parquet"} else CSVSource
    return cls(paths, columns=columns, chunk_rows=chunk_rows, memory_budget=memory_budget)


def _kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    raise DataError(
        other_format(path) or f"{path}: unknown file kind; give .parquet or .csv (.csv.gz) files"
    )


def _is_dask(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr")


def check_columns(columns: object) -> list | None:
    """`columns` as a list of distinct names (a string is one name), or SpecError."""
    if columns is None:
        return None
    names = [columns] if isinstance(columns, str) else columns
    if not isinstance(names, Sequence) or not names or len(set(names)) < len(names):
        raise SpecError(
            f"columns must name each column once, e.g. ['a', 'b'] (or one name), got {columns!r}"
        )
    return list(names)


def select_columns(data: object, columns: Sequence[str] | None) -> tuple[object, object]:
    """(data, checked columns) with an in-memory data frame's `columns` selected, by name
    (files and Dask collections select theirs while reading: returned as they are); without
    `columns`, a data frame's unnamed and index columns left out (`fit_frame`)."""
    columns = check_columns(columns)
    if columns is None:
        return fit_frame(data), None
    if column_names(data) is None or _is_dask(data):
        return data, columns
    return by_name(data, columns), None


def is_paths(data: object) -> bool:
    """Whether `data` names files: a path, or a non-empty list of paths."""
    return isinstance(data, str | os.PathLike) or (
        isinstance(data, list | tuple)
        and bool(data)
        and all(isinstance(p, str | os.PathLike) for p in data)
    )


def as_source(
    data: object,
    *,
    columns: Sequence[str] | None = None,
    chunk_rows: int | None = None,
    budget: int | None = None,
) -> Source | None:
    """The chunked source for `data`, or None for in-memory data fitted as one array.

    Paths (and lists of paths) open files; Dask collections become a
    `bayesmix.distributed.DaskSource`; memory maps, and arrays given with chunk_rows or a
    memory budget, an `ArraySource`; a `Source` is returned as it is.
    """
    if isinstance(data, Source):
        return data
    if is_paths(data):
        return open_source(data, columns=columns, chunk_rows=chunk_rows, memory_budget=budget)
    if _is_dask(data):
        from .distributed import DaskSource

        return DaskSource(data, columns=columns, chunk_rows=chunk_rows)
    if columns is not None:
        raise SpecError(
            "columns applies to files and DataFrames (pandas or Dask); select array columns "
            "yourself, e.g. x[:, [0, 2]]"
        )
    if isinstance(data, np.memmap) or chunk_rows is not None or budget is not None:
        return ArraySource(data, chunk_rows=chunk_rows, memory_budget=budget)
    return None


def as_matrix(data: object) -> tuple[np.ndarray, Scan | None]:
    """In-memory data -> (a validated (N, D) array, its Scan or None): `as_data` for small
    data; for large arrays the same checks chunk by chunk (the Scan), without a float64 copy
    of the whole array."""
    arr = data if isinstance(data, np.ndarray) else None
    if arr is None and hasattr(data, "__array__") and hasattr(data, "shape"):
        arr = np.asarray(data)
    if arr is None or arr.size < LARGE or arr.ndim not in (1, 2):
        return as_data(data), None
    arr = arr[:, None] if arr.ndim == 1 else arr
    # Chunks of 256K values: the checks' float64 temporaries (2 MiB) stay well under the
    # data's size.
    scan = ArraySource(arr, chunk_rows=max(256, (1 << 18) // arr.shape[1])).scan()
    return arr, scan

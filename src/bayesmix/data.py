"""User data -> a validated float array of shape (N, D).

Everything that reaches the numeric core has passed through `as_data`: finite, numeric,
two-dimensional, at least two rows, no constant column, magnitudes that cannot overflow.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from .errors import DataError

__all__ = ["LARGE", "SEED_DATA", "as_data", "csv_columns", "read_csv", "read_parquet"]

#: The five points of Pyro's Gaussian-mixture tutorial.
SEED_DATA = np.array([[0.0], [1.0], [10.0], [11.0], [12.0]])

#: From this many values (rows x columns) on, data are large: fits compute in float32 (dtype
#: "auto") and in-memory arrays are checked chunk by chunk, without a float64 copy.
LARGE = 1_000_000

# Squared distances of values up to this magnitude stay finite in float64 (and the
# fitted scale, locs and densities too); beyond it, results would overflow.
MAX_ABS = 1e150


def _numeric(column: object) -> bool:
    try:
        np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


def as_data(
    x: object,
    columns: Sequence[str] | None = None,
    source: str = "data",
    *,
    for_fit: bool = True,
    dim: int | None = None,
) -> np.ndarray:
    """Validate `x` and return it as a float64 array of shape (N, D).

    A 1-D input of length N is read as N points in one dimension (or, with `dim` > 1, as one
    point). `columns` names the columns in messages; `source` names where the data came from.
    `for_fit` also requires two rows and no constant column; `dim` requires D == dim.
    """
    frame = list(x.columns) if hasattr(x, "columns") and hasattr(x, "to_numpy") else None
    if frame is not None and columns is None:  # a data frame (pandas, polars): its names
        columns = [f"column {c!r}" for c in frame]
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        if frame is not None:
            text = [c for c in frame if not _numeric(x[c])]
            if text:
                keep = [c for c in frame if c not in text]
                raise DataError(
                    f"{source} column {text[0]!r} is not numeric ({exc}); select the numeric "
                    f"columns, e.g. data[{keep!r}]"
                ) from None
        raise DataError(
            f"{source} is not numeric ({exc}); pass numbers only, one row per point"
        ) from None
    if arr.ndim == 1:
        arr = arr[None, :] if dim is not None and dim > 1 else arr[:, None]
    if arr.ndim != 2:
        raise DataError(
            f"{source} must be a table of shape (rows, columns), got an array of shape {arr.shape}"
        )
    n, d = arr.shape
    names = list(columns) if columns is not None else [f"column {j}" for j in range(d)]
    if n == 0 or d == 0:
        raise DataError(f"{source} is empty; give at least two rows of numbers")
    if dim is not None and d != dim:
        raise DataError(f"{source} has {d} columns but the model was fitted on {dim}")
    if for_fit and n < 2:
        raise DataError(f"{source} has a single row; a mixture needs at least two data points")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(
            f"{source} has a non-finite value ({arr[i, j]}) in row {i + 1}, {names[j]} "
            f"({int(bad.sum())} in all); remove or impute those rows"
        )
    big = np.abs(arr) > MAX_ABS
    if big.any():
        i, j = np.argwhere(big)[0]
        raise DataError(
            f"{source} has a value too large to fit reliably ({arr[i, j]:.3g}) in row {i + 1}, "
            f"{names[j]}; values must be below {MAX_ABS:.0e} in magnitude: rescale the data "
            f"(e.g. divide by 10**{int(math.log10(np.abs(arr).max())) - 2})"
        )
    for j in range(d if for_fit else 0):
        if np.all(arr[:, j] == arr[0, j]):
            raise DataError(
                f"{names[j]} of {source} is constant (every value is {arr[0, j]:g}); it carries "
                "no information about clusters and makes the scale degenerate: drop that column"
            )
    return arr


def read_csv(
    path: str | os.PathLike[str], column: str | None = None, *, for_fit: bool = True
) -> tuple[np.ndarray, list[str]]:
    """Read a CSV file with a header row; return (data (N, D), column names).

    With `column`, only that column is read; otherwise every column, all of which must be
    numeric. Empty lines are skipped.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"file not found: {path}; check the path")
    if os.path.isdir(path):
        raise DataError(f"{path} is a folder, not a CSV file")
    header, read = csv_columns(path, "" if column else "; choose a numeric column with --column")
    if column is not None and column not in header:
        raise DataError(f"{path} has no column {column!r}; its columns are {header}")
    names = header if column is None else [column]
    values = np.column_stack([read(header.index(c)) for c in names])
    return as_data(values, [f"column {n!r}" for n in names], path, for_fit=for_fit), names


def read_parquet(
    path: str | os.PathLike[str], column: str | None = None, *, for_fit: bool = True
) -> tuple[np.ndarray, list[str]]:
    """Read a Parquet file (or a folder of them) into memory; return (data (N, D), column
    names), as `read_csv` does. With `column`, only that column; otherwise every column, all of
    which must be numeric. Needs pyarrow; for files larger than memory, fit them in chunks
    (`bayesmix.sources`)."""
    from .sources import open_source

    source = open_source(path, columns=None if column is None else [column])
    chunks = [chunk.values for chunk in source.chunks()]
    if not chunks:
        raise DataError(f"{source.name} holds no rows; give at least two rows of numbers")
    names = list(source.columns)
    values = np.concatenate(chunks)
    return as_data(values, [f"column {n!r}" for n in names], source.name, for_fit=for_fit), names


def csv_columns(
    path: str | os.PathLike[str], hint: str = ""
) -> tuple[list[str], Callable[[int], np.ndarray]]:
    """(header, read) of a CSV file with a header row: read(j) is column j as float64 (N,),
    raising a DataError that names the line and column (plus `hint`) of a non-number."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text CSV file (it is not valid UTF-8)") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not a valid CSV file: {exc}") from None
    if not rows:
        raise DataError(f"{path} is empty; it needs a header row and rows of numbers")
    header = [h.strip() for h in rows[0]]
    if _all_numbers(header):
        raise DataError(
            f"{path} has no header row (its first row is all numbers); "
            "add a first line naming the columns, e.g. 'x'"
        )
    body = rows[1:]
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise DataError(
                f"{path}, line {i + 2}: {len(row)} fields where the header has {len(header)}"
            )

    def read(j: int) -> np.ndarray:
        out = np.empty(len(body))
        for i, row in enumerate(body):
            try:
                out[i] = float(row[j])
            except ValueError:
                raise DataError(
                    f"{path}, line {i + 2}, column {header[j]!r}: {row[j]!r} is not a number" + hint
                ) from None
        return out

    return header, read


def _all_numbers(cells: Sequence[str]) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True

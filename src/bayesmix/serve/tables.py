"""Tables in and out for batch prediction: CSV always, Parquet when pyarrow is installed.

A file is Parquet when its name ends in `.parquet` or `.pq`, else CSV (with a header row).
Reading validates like `bayesmix.data` (messages name the file, line and column); writing is
atomic, and floats are written in full precision (they read back to the same float64).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..data import as_data, csv_columns
from ..errors import DataError
from ..io import atomic_write, dictionary_columns

__all__ = ["is_parquet", "read_table", "require_pyarrow", "table_bytes", "write_table"]

PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def read_table(
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    for_fit: bool = False,
    dim: int | None = None,
    hint: str = "",
) -> tuple[np.ndarray, list[str]]:
    """Read `columns` (default: every column, all numeric) of a CSV or Parquet file.

    Returns (x (N, D) float64, the column names), validated by `bayesmix.data.as_data`
    (`for_fit` and `dim` as there). Other columns of the file are ignored. `hint` ends the
    message of a missing or non-numeric column (how to choose others).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}; check the path")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a data file")
    header, read = _parquet(path, hint) if is_parquet(path) else csv_columns(path, hint)
    if len(set(header)) != len(header):
        twice = sorted({h for h in header if header.count(h) > 1})
        raise DataError(f"{path} has duplicate column names {twice}; rename them")
    names = list(header) if columns is None else list(columns)
    missing = [c for c in names if c not in header]
    if missing:
        raise DataError(f"{path} has no column(s) {missing}; its columns are {header}{hint}")
    values = np.column_stack([read(header.index(c)) for c in names]) if names else np.empty((0, 0))
    labels = [f"column {c!r}" for c in names]
    return as_data(values, labels, str(path), for_fit=for_fit, dim=dim), names


def require_pyarrow():
    """(pyarrow, pyarrow.parquet), or a DataError that says how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "Parquet files need pyarrow, which is not installed: pip install pyarrow "
            "(or pip install 'bayesmix[serve]'), or use a CSV file"
        ) from None
    return pa, pq


def _parquet(path: Path, hint: str = ""):
    pa, pq = require_pyarrow()
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path} is not a readable Parquet file: {exc}") from None
    header = list(table.column_names)

    def read(j: int) -> np.ndarray:
        col, name = table.column(j), header[j]
        t = col.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
            raise DataError(f"{path}, column {name!r} holds {t} values, not numbers{hint}")
        if col.null_count:
            i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(
                f"{path}, row {i + 1}, column {name!r} is empty (null; {col.null_count} in all); "
                "remove or impute those rows"
            )
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)

    return header, read


def table_bytes(table: Mapping[str, np.ndarray], parquet: bool = False) -> bytes:
    """The bytes of a CSV (header row, then one line per row) or Parquet file of `table`
    (name -> (N,) column, all of one length)."""
    if parquet:
        pa, pq = require_pyarrow()
        buf = io.BytesIO()
        arrow = pa.table({name: np.asarray(v) for name, v in table.items()})
        pq.write_table(arrow, buf, use_dictionary=dictionary_columns(arrow.schema))
        return buf.getvalue()
    columns = [np.asarray(v).tolist() for v in table.values()]  # floats print in full (repr)
    lines = [",".join(_csv_cell(name) for name in table)]
    lines += [",".join(map(repr, row)) for row in zip(*columns, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def _csv_cell(text: str) -> str:
    if any(c in text for c in ',"\n\r') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def write_table(path: str | os.PathLike[str], table: Mapping[str, np.ndarray]) -> Path:
    """Write `table` atomically to `path`, as Parquet when the name ends in .parquet / .pq."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"cannot write {path}: it is a folder; give a file name")
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: the folder {path.parent} does not exist")
    data = table_bytes(table, parquet=is_parquet(path))
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path

"""Tables out of batch prediction: CSV always, Parquet when pyarrow is installed.

A file is Parquet when its name ends in `.parquet` or `.pq`, else CSV (with a header row), as
for `bayesmix.data.read_table`. Writing is atomic, and floats are written in full precision
(they read back to the same float64).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..data import is_parquet, require_pyarrow
from ..errors import DataError
from ..io import atomic_write, csv_cell, dictionary_columns

__all__ = ["table_bytes", "write_table"]


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
    lines = [",".join(csv_cell(name) for name in table)]
    lines += [",".join(map(repr, row)) for row in zip(*columns, strict=True)]
    return ("\n".join(lines) + "\n").encode()


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

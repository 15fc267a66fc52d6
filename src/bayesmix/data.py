"""User data -> a validated float array of shape (N, D).

Everything that reaches the numeric core has passed through `as_data`: finite, numeric,
two-dimensional, at least two rows, no constant column, magnitudes that cannot overflow.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import DataError, DataWarning, warn

__all__ = [
    "LARGE",
    "SEED_DATA",
    "as_data",
    "by_name",
    "column_moments",
    "column_names",
    "csv_columns",
    "csv_header",
    "data_files",
    "fit_frame",
    "is_parquet",
    "model_data",
    "opener",
    "read_csv",
    "read_table",
    "require_pyarrow",
    "table_columns",
]

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


def column_names(x: object) -> tuple[str, ...] | None:
    """The column names of a data frame (pandas, polars), else None."""
    return tuple(str(c) for c in x.columns) if _is_frame(x) else None


def _is_frame(x: object) -> bool:
    return hasattr(x, "columns") and hasattr(x, "to_numpy")


def model_data(x: object, names: Sequence[str] | None, d: int) -> np.ndarray:
    """`x` validated (N, D) for a fitted model of D columns named `names` (a fit's `columns`):
    a data frame's columns by name, in that order; arrays by position."""
    return as_data(by_name(x, names), for_fit=False, dim=d)


def fit_frame(data: object) -> object:
    """`data` to fit: a data frame without its unnamed and index columns (`default_columns`:
    a row index written by `to_csv` and read back as `Unnamed: 0` is not a dimension), with a
    DataWarning; any other data as it is."""
    names = column_names(data)
    if names is None:
        return data
    keep = default_columns(names, "the data frame",
                           fix="select the columns to fit by name to include them")  # fmt: skip
    return data if len(keep) == len(names) else by_name(data, keep)


def by_name(x: object, names: Sequence[str] | None) -> object:
    """A data frame's columns `names`, in that order, by name; any other data as it is."""
    have = column_names(x)
    if names is None or have is None or have == tuple(names):
        return x
    lookup = dict(zip(have, x.columns, strict=True))
    if missing := [c for c in names if c not in lookup]:
        raise DataError(
            f"the data frame has no column(s) {missing} of {list(names)}; its columns are "
            f"{list(have)} (rename them, or pass an array, whose columns are taken in order)"
        )
    return x[[lookup[c] for c in names]]


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
    frame = list(x.columns) if _is_frame(x) else None
    if frame is not None and columns is None:  # a data frame (pandas, polars): its names
        columns = [f"column {c!r}" for c in frame]
    if np.iscomplexobj(x):  # NumPy would drop the imaginary parts with a warning
        raise DataError(f"{source} holds complex numbers; pass real numbers (e.g. x.real)")
    try:
        try:  # pandas: missing values (pd.NA of nullable columns) as NaN, reported by row
            arr = x.to_numpy(dtype=np.float64, na_value=np.nan)
        except (AttributeError, TypeError):  # not pandas (NumPy, lists, polars)
            arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        if frame is not None:
            text = [c for c in frame if not _numeric(x[c])]
            if text:
                keep = [c for c in frame if c not in text]
                fix = (
                    f"select the numeric columns, e.g. data[{keep!r}]"
                    if keep
                    else "encode it as numbers first (e.g. one-hot); a mixture of Gaussians "
                    "models numeric data"
                )
                raise DataError(
                    f"{source} column {text[0]!r} is not numeric ({exc}); {fix}"
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
        need = "two rows" if for_fit else "one row"
        raise DataError(f"{source} is empty; give at least {need} of numbers")
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


def column_moments(x: np.ndarray, chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) of the columns of x (N, D), each (D,) float64, accumulated in float64 a chunk
    of rows at a time: no temporary of x's size (`x.std` makes one, 800 MB for 1e7 x 10
    float64; a float32 x would need a float64 copy)."""
    mean = x.mean(axis=0, dtype=np.float64)
    squares = sum(((x[i : i + chunk] - mean) ** 2).sum(axis=0) for i in range(0, len(x), chunk))
    return mean, np.sqrt(squares / len(x))


def read_table(
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    for_fit: bool = True,
    dim: int | None = None,
    hint: str = "",
) -> tuple[np.ndarray, list[str]]:
    """Read `columns` (default: every column, all numeric) of a CSV file with a header row, or
    of a Parquet file (`.parquet`, `.pq`; needs pyarrow) or a folder of them, into memory.

    Returns (x (N, D) float64, the column names), validated by `as_data` (`for_fit` and `dim`
    as there); other columns of the file are ignored. `hint` ends the message of a missing or
    non-numeric column (how to choose others). For files larger than memory, fit them in
    chunks (`bayesmix.sources`).
    """
    names, read = table_columns(path, columns, hint)
    values = read() if names else np.empty((0, 0))
    labels = [f"column {c!r}" for c in names]
    return as_data(values, labels, str(path), for_fit=for_fit, dim=dim), names


_UNNAMED = re.compile(r"Unnamed: \d+|__index_level_\d+__")


def default_columns(
    header: Sequence[str],
    path: object,
    announce: bool = True,
    fix: str = "name the columns to read to include them",
) -> list[str]:
    """A file's (or data frame's) columns to read when none are named: all but unnamed ones
    (a trailing separator, or the row index `to_csv` writes unless index=False; pandas names
    them `Unnamed: 0` when it reads them back) and pandas' index columns in Parquet
    (`__index_level_0__`), with a DataWarning naming those left out and `fix`."""
    left = [j for j, h in enumerate(header) if not h.strip() or _UNNAMED.fullmatch(h)]
    if left and announce:
        warn(
            f"{path}: left out {len(left)} unnamed or index column(s) (column "
            f"{', '.join(str(j + 1) for j in left)} of {len(header)}: a trailing separator or "
            f"a row index, which pandas writes unless index=False); {fix}",
            DataWarning,
        )
    return [h for j, h in enumerate(header) if j not in left]


#: Compressed CSV files, read as they are (by pyarrow and by Python alike).
COMPRESSED_CSV = (".csv.gz", ".csv.bz2")
CSV_SUFFIXES = (".csv", *COMPRESSED_CSV)

# Formats that are not CSV, by suffix: what to do with them.
_OTHER_FORMATS = {
    (".gz", ".bz2", ".xz", ".zst", ".zip", ".7z"): "is compressed, and not as a CSV file named "
    "*.csv.gz or *.csv.bz2 (read as they are); decompress it (e.g. gunzip) or convert it to "
    "Parquet",
    (".xlsx", ".xlsm", ".xls", ".ods"): "is a spreadsheet; save the sheet as CSV, or read it "
    "with pandas.read_excel and pass the DataFrame",
    (".json", ".jsonl", ".ndjson"): "is JSON; read it with pandas.read_json and pass the "
    "DataFrame, or convert it to CSV or Parquet",
    (".npy", ".npz"): "is a NumPy file; load it with numpy.load and pass the array",
    (".feather", ".arrow", ".h5", ".hdf5", ".pkl", ".pickle"): "is not CSV or Parquet; read "
    "it with pandas and pass the DataFrame, or convert it to Parquet",
}


def other_format(path: object) -> str | None:
    """Why a file of a known non-CSV format (by its suffix) is not read, and what to do; None
    for other files."""
    lower = str(path).lower()
    if lower.endswith(COMPRESSED_CSV):
        return None
    for suffixes, why in _OTHER_FORMATS.items():
        if lower.endswith(suffixes):
            return f"{path} {why}"
    return None


def table_columns(
    path: str | os.PathLike[str], columns: Sequence[str] | None = None, hint: str = ""
) -> tuple[list[str], Callable[[], np.ndarray]]:
    """(the names of `columns` (default: every column), read) of a CSV or Parquet file, from
    its header alone: read() reads their values (N, D) float64. DataError for a missing file,
    duplicate names or a missing column (its message ends with `hint`)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}; check the path")
    parquet = path.is_dir() or is_parquet(path)
    if not parquet and other_format(path):
        raise DataError(other_format(path))
    header, read = _parquet_columns(path, hint) if parquet else csv_columns(path, hint)
    twice = sorted({h for h in header if h.strip() and header.count(h) > 1})
    if twice:  # unnamed columns (trailing separators) may repeat: they are left out
        raise DataError(f"{path} has duplicate column names {twice}; rename them")
    names = default_columns(header, path) if columns is None else list(columns)
    missing = [c for c in names if c not in header]
    if missing:
        raise DataError(f"{path} has no column(s) {missing}; its columns are {header}{hint}")
    return names, lambda: read([header.index(c) for c in names])


def read_csv(
    path: str | os.PathLike[str], column: str | None = None, *, for_fit: bool = True
) -> tuple[np.ndarray, list[str]]:
    """Read a CSV file with a header row; return (data (N, D), column names): `read_table`
    with one column, or every column (all numeric). Empty lines are skipped."""
    hint = "" if column else "; choose a numeric column (read_csv(path, column=...))"
    return read_table(path, None if column is None else [column], for_fit=for_fit, hint=hint)


PARQUET_SUFFIXES = (".parquet", ".pq")


def data_files(path: str | os.PathLike[str]) -> list[Path]:
    """[path], or for a folder its `*.parquet` files in name order (read as one table)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    if files := sorted(path.glob("*.parquet")):
        return files
    raise DataError(f"the folder {path} holds no .parquet files; give a CSV or Parquet file")


def is_parquet(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


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


Columns = Callable[[list[int]], np.ndarray]  # read(the columns' indices) -> (N, len) float64


def _parquet_columns(path: Path, hint: str = "") -> tuple[list[str], Columns]:
    """(header, read) of a Parquet file or a folder of them (its `*.parquet` files, as one
    table), as `csv_columns`."""
    pa, pq = require_pyarrow()
    files = data_files(path)
    try:
        header = list(pq.read_schema(files[0]).names)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path} is not a readable Parquet file: {exc}") from None

    def column(table, name: str, file: Path) -> np.ndarray:
        col = table.column(name)
        t = col.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
            raise DataError(f"{file}, column {name!r} holds {t} values, not numbers{hint}")
        if col.null_count:
            i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(
                f"{file}, row {i + 1}, column {name!r} is empty (null; {col.null_count} in all); "
                "remove or impute those rows"
            )
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)

    def read(js: list[int]) -> np.ndarray:
        names, parts = [header[j] for j in js], []
        for file in files:  # one at a time: each message names its file
            try:
                have = pq.read_schema(file).names
                if missing := [n for n in names if n not in have]:
                    raise DataError(
                        f"{file} has no column(s) {missing} (its columns are {have}), which "
                        f"{files[0]} has; the files of a folder are read as one table"
                    )
                table = pq.read_table(file, columns=names)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"{file} is not a readable Parquet file: {exc}") from None
            parts.append(np.column_stack([column(table, n, file) for n in names]))
        return np.concatenate(parts)

    return header, read


def csv_columns(path: str | os.PathLike[str], hint: str = "") -> tuple[list[str], Columns]:
    """(header, read) of a CSV file with a header row: read(js) is columns js as float64
    (N, len(js)), raising a DataError that names the line and column (plus `hint`) of a
    non-number. With pyarrow installed the values are parsed by its CSV reader (4-8x faster);
    where it finds anything amiss, the file is read again here, for the same messages."""
    (header,), header_lines = _csv_rows(path, header_only=True)
    if _all_numbers(header):
        raise DataError(
            f"{path} has no header row (its first row is all numbers); "
            "add a first line naming the columns, e.g. 'x'"
        )
    hint = separator_hint(header) or hint

    def read(js: list[int]) -> np.ndarray:
        fast = _csv_arrow(path, header, header_lines, js)
        if fast is not None:
            return fast
        body = _csv_rows(path)[0][1:]
        for i, row in enumerate(body):
            if len(row) != len(header):
                raise DataError(
                    f"{path}, line {i + 2}: {len(row)} fields where the header has {len(header)}"
                )
        out = np.empty((len(body), len(js)))
        for k, j in enumerate(js):
            for i, row in enumerate(body):
                try:
                    out[i, k] = float(row[j])
                except ValueError:
                    raise DataError(
                        f"{path}, line {i + 2}, column {header[j]!r}: {not_a_number(row[j], hint)}"
                    ) from None
        return out

    return header, read


# What CSV writers put for a missing value (pandas' NA spellings that float() does not read).
_MISSING = {"", "na", "n/a", "#n/a", "null", "none", "<na>", "nil"}


def not_a_number(value: str, hint: str) -> str:
    """The end of the message for a CSV field that is not a number: a missing value (empty or
    NA) asks for complete rows, as a NaN does; anything else is a non-number, plus `hint`."""
    if value.strip().lower() in _MISSING:
        return (
            f"a missing value ({value!r}); bayesmix fits complete rows: remove or impute the "
            "rows with missing values"
        )
    return f"{value!r} is not a number{hint}"


def separator_hint(header: Sequence[str]) -> str:
    """The end of a non-number's message for a CSV file whose one column is named like 'a;b':
    a file of another separator (';', tab, '|'); else ""."""
    seps = [sep for sep in ";\t|" if len(header) == 1 and sep in header[0]]
    if not seps:
        return ""
    return (
        f"; the file looks separated by {seps[0]!r}, and bayesmix reads commas: convert it, "
        f"e.g. pandas.read_csv(path, sep={seps[0]!r}).to_csv(new_path, index=False)"
    )


def opener(path: str | os.PathLike[str]) -> Callable:
    """`gzip.open` or `bz2.open` for a name ending in .gz or .bz2, else `open`."""
    return {".gz": gzip.open, ".bz2": bz2.open}.get(Path(path).suffix.lower(), open)


def csv_header(path: str | os.PathLike[str]) -> list[str]:
    """A CSV file's column names (its first non-empty row, stripped of surrounding blanks),
    or a DataError (empty, not UTF-8, damaged compression)."""
    return _csv_rows(path, header_only=True)[0][0]


def _csv_rows(
    path: str | os.PathLike[str], header_only: bool = False
) -> tuple[list[list[str]], int]:
    """(the non-empty rows of a CSV file (only the first with `header_only`), the header
    stripped of surrounding blanks; the number of lines up to the header, blank lines before
    it and its own included)."""
    try:
        # UTF-8, a byte-order mark skipped; decompressed for a name ending in .gz or .bz2
        with opener(path)(path, "rt", newline="", encoding="utf-8-sig") as fh:
            rows, reader, header_lines = [], csv.reader(fh), 0
            for r in reader:
                if "".join(r).strip():
                    rows.append(r)
                    if len(rows) == 1:
                        header_lines = reader.line_num
                        if header_only:
                            break
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text CSV file (it is not valid UTF-8)") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not a valid CSV file: {exc}") from None
    except (OSError, EOFError) as exc:  # a damaged .gz / .bz2 file
        raise DataError(f"{path} could not be decompressed ({exc}); check the file") from None
    if not rows:
        raise DataError(f"{path} is empty; it needs a header row and rows of numbers")
    rows[0] = [h.strip() for h in rows[0]]
    return rows, header_lines


def _csv_arrow(path: str | os.PathLike[str], header: list[str], header_lines: int, js: list[int]):
    """Columns js of a CSV file parsed by pyarrow (N, len(js)) after its first `header_lines`
    lines, or None: pyarrow missing, or anything it does not read cleanly as numbers (an empty
    cell, a ragged row, text, 'nan')."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    names = [f"c{j}" for j in range(len(header))]  # the header as read above (BOM, blanks)
    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=header_lines),
            convert_options=pcsv.ConvertOptions(
                include_columns=[names[j] for j in js],
                column_types={names[j]: pa.float64() for j in js},
            ),
        )
    except (pa.ArrowException, OSError):
        return None
    if any(col.null_count for col in table.columns):
        return None
    out = np.empty((table.num_rows, len(js)))
    for k, col in enumerate(table.columns):
        out[:, k] = col.to_numpy()
    return out


def _all_numbers(cells: Sequence[str]) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True

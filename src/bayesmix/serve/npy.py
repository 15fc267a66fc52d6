"""NPY request bodies (`Content-Type: application/x-npy`): the bytes `np.save` writes, read
without trusting their header.

`np.load` allocates whatever shape the header claims before it reads the data; here the header
is parsed alone (NumPy's own reader, formats 1.0 and 2.0), its shape and dtype are checked and
the data must fill the rest of the body exactly before any array is made, so a 100-byte body
cannot claim a terabyte. Nothing is unpickled: object and structured dtypes are refused.
"""

from __future__ import annotations

import io
import math
import reprlib
from collections.abc import Sequence

import numpy as np

__all__ = ["MEDIA_TYPE", "NpyError", "read_rows"]

MEDIA_TYPE = "application/x-npy"
#: Accepted dtypes: floats (16, 32, 64 bits), signed and unsigned integers; all become float64.
DTYPES = "float16/32/64 or (unsigned) integers"
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
_FIX = "send the bytes np.save writes"


class NpyError(ValueError):
    """An NPY body that cannot be served; the message says what is wrong and how to fix it."""


def read_rows(body: bytes, columns: Sequence[str], max_rows: int) -> np.ndarray:
    """The rows (N, D) of an NPY body, as float64 in C order (D = len(columns)).

    The array must have shape (N, D), or (N,) when D == 1, 1 <= N <= max_rows, and a dtype in
    `DTYPES`; Fortran order is read as such. Raises NpyError otherwise. The values themselves
    (finite, magnitude) are the caller's to check, as for JSON rows.
    """
    if not body:
        raise NpyError(f"the request body is empty; {_FIX} (an array of shape (rows, D))")
    fp = io.BytesIO(body)
    shape, fortran, dtype = _header(fp)
    if dtype.kind not in "fiu" or dtype.itemsize > 8:
        raise NpyError(
            f"the NPY body's dtype {reprlib.repr(str(dtype))} is not supported; send {DTYPES}, "
            "e.g. np.save(f, x.astype(np.float64))"
        )
    n = _rows(shape, dtype, len(body) - fp.tell(), columns, max_rows)
    data = np.frombuffer(body, dtype, count=math.prod(shape), offset=fp.tell())
    x = data.reshape(shape[::-1]).T if fortran else data.reshape(shape)
    return x.reshape(n, len(columns)).astype(np.float64, order="C")


def _header(fp: io.BytesIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from the magic string and header of an NPY file."""
    try:
        version = np.lib.format.read_magic(fp)
    except ValueError as exc:
        raise NpyError(f"the request body is not an NPY file ({exc}); {_FIX}") from None
    read = _HEADER_READERS.get(version)
    if read is None:  # 3.0 is only written for structured dtypes with non-Latin-1 field names
        raise NpyError(
            f"NPY format version {version[0]}.{version[1]} is not supported; "
            "np.save writes 1.0 (2.0 for a very long header) for numeric arrays"
        )
    try:
        return read(fp)
    except Exception as exc:  # NumPy's reader raises ValueError, SyntaxError, TokenError, ...
        why = exc.args[0] if exc.args and isinstance(exc.args[0], str) else repr(exc)
        why = why.split("\n", 1)[0]  # (not NumPy's advice to trust the file)
        raise NpyError(f"the NPY header is not valid ({why:.200}); {_FIX}") from None


def _rows(
    shape: tuple[int, ...], dtype: np.dtype, size: int, columns: Sequence[str], max_rows: int
) -> int:
    """The number of rows of an array of this shape and dtype in `size` bytes of data, after
    checking that the data fill it exactly and that the shape suits the model."""
    d, shown = len(columns), reprlib.repr(shape)
    want = f"send an array of shape (rows, {d})" + (" or (rows,)" if d == 1 else "")
    if len(shape) not in (1, 2) or min(shape) < 0:
        raise NpyError(f"the NPY body has shape {shown}; {want}")
    need = math.prod(shape) * dtype.itemsize
    if need != size:
        raise NpyError(
            f"the NPY body holds {size:,} bytes of data but its header (shape {shown}, dtype "
            f"{dtype}) needs {_count(need)}: the body is truncated or damaged; {_FIX}, whole"
        )
    width = shape[1] if len(shape) == 2 else 1
    if width != d:
        given = f"{width} columns" if len(shape) == 2 else f"shape {shown}"
        raise NpyError(
            f"the NPY body has {given} but the model has {d} (columns {list(columns)}); {want}"
        )
    if shape[0] == 0:
        raise NpyError(f"the NPY body has no rows (shape {shown}); send at least one row")
    if shape[0] > max_rows:
        raise NpyError(
            f"the NPY body has {shape[0]:,} rows, over the limit of {max_rows:,} per request; "
            "split the batch"
        )
    return shape[0]


def _count(n: int) -> str:
    """`n` bytes in words, also for numbers with thousands of digits."""
    return f"{n:,} bytes" if n < 10**15 else f"about 10^{int(n.bit_length() * math.log10(2))} bytes"

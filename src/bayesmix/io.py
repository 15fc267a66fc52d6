"""Files: atomic writes, and saved models (`save` / `load`).

A saved model (suffix `.bmx`, format described in docs/format.md) is one ZIP archive holding
`manifest.json` (metadata and the structure of the fit) and `arrays.npz` (every array, by a
dotted name such as `fit.params.locs`). Fields are serialized generically, by name: any
NamedTuple or dataclass of bayesmix's results round-trips, so the format follows the model as
it grows. No pickle is involved; the manifest carries a format version and the SHA-256 of the
arrays, and `load` refuses newer versions, corrupted or truncated files with a clear message.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import io
import json
import math
import os
import struct
import tempfile
import typing
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import DataError, SpecError
from .result import MAPResult, Posterior, as_fit

__all__ = ["FORMAT_VERSION", "SavedModel", "atomic_write", "dumps", "load", "loads", "save"]

#: Version of the saved-model format written by `save`; `load` reads this version and older.
FORMAT_VERSION = 1
FORMAT_NAME = "bayesmix.model"
_MANIFEST, _ARRAYS = "manifest.json", "arrays.npz"
# Members are stored uncompressed; this date makes the container's bytes depend on content only.
_DATE = (1980, 1, 1, 0, 0, 0)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename;
    the previous file, if any, stays intact until the new one is complete (and keeps its
    permissions; a new file gets 0644)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def dictionary_columns(schema) -> list[str]:
    """The columns of an Arrow schema to write with Parquet's dictionary encoding: all but the
    floating-point ones (labels, integers). On membership probabilities, nearly every value
    distinct, pyarrow's default of encoding every column made writing 3x slower and the file
    larger."""
    import pyarrow as pa

    return [f.name for f in schema if not pa.types.is_floating(f.type)]


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class SavedModel:
    """A model read by `load`: the MAP fit, the posterior draws (or None), the data's column
    names (D of them) and `meta` (format_version, bayesmix_version, created, fit_method, k, d,
    settings)."""

    fit: MAPResult
    posterior: Posterior | None
    columns: list[str]
    meta: dict

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def d(self) -> int:
        return int(self.meta["d"])


def csv_cell(text: str) -> str:
    """`text` as one CSV field (quoted where it holds a comma, quote, line break or edge blanks)."""
    if any(c in text for c in ',"\n\r') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def save(
    path: str | os.PathLike[str],
    fit: MAPResult,
    posterior: Posterior | None = None,
    columns: Sequence[str] | None = None,
    *,
    settings: dict | None = None,
) -> Path:
    """Save a fitted model to `path` (suggested suffix `.bmx`), atomically; return the path.

    fit: from `fit_map` (or `fit_em`), or a fitted `BayesianMixture` (its fit, and the
    DataFrame's column names it was fitted on); posterior: from `sample_nuts` on the same model,
    or None; columns: the D column names (default: the fit's `columns`, the names of the data
    frame or files it was fitted on, else x0, x1, ...); settings: JSON-ready options of
    the fit, kept in the metadata.
    """
    if not isinstance(path, str | os.PathLike):
        raise SpecError(f"save(path, fit, ...) takes the path first; got {type(path).__name__}")
    if columns is None and hasattr(fit, "feature_names_in_"):  # a fitted BayesianMixture
        columns = [str(c) for c in fit.feature_names_in_]
    fit = as_fit(fit)
    path = Path(path)
    if path.is_dir():
        raise DataError(f"cannot save the model to {path}: it is a folder; give a file name")
    if not path.parent.is_dir():
        raise DataError(
            f"cannot save the model to {path}: the folder {path.parent} does not exist; create it"
        )
    data = dumps(fit, posterior, columns, settings=settings)
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise DataError(f"cannot write the model to {path}: {exc.strerror or exc}") from None
    return path


def load(path: str | os.PathLike[str]) -> SavedModel:
    """Read a model written by `save`. Raises DataError naming the problem (missing file, not
    a model, truncated or corrupted, a format version newer than this bayesmix reads)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"model file not found: {path}; check the path")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a model file (.bmx)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the model file {path}: {exc.strerror or exc}") from None
    return loads(data, source=str(path))


def dumps(
    fit: MAPResult,
    posterior: Posterior | None = None,
    columns: Sequence[str] | None = None,
    *,
    settings: dict | None = None,
) -> bytes:
    """The bytes `save` writes (see `save`)."""
    fit = as_fit(fit)
    if posterior is not None and not isinstance(posterior, Posterior):
        raise SpecError(
            "posterior must be a Posterior (from bm.sample_nuts) or None, "
            f"got {type(posterior).__name__}"
        )
    k, d = (int(n) for n in np.shape(fit.params.locs))
    columns = _check_columns(fit.columns if columns is None else columns, d)
    if posterior is not None and np.shape(posterior.params.locs)[-2:] != (k, d):
        raise SpecError(
            f"the posterior has locs of shape {np.shape(posterior.params.locs)[-2:]} per draw but "
            f"the fit has {(k, d)}: save the posterior of the same model and data"
        )
    if settings is not None and not _plain(settings):
        raise SpecError("settings must be JSON-ready (numbers, strings, lists, dicts)")
    arrays: dict[str, np.ndarray] = {}
    tree = {
        "fit": _encode(fit, "fit", arrays),
        "posterior": None if posterior is None else _encode(posterior, "posterior", arrays),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz = buf.getvalue()
    from . import __version__

    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "bayesmix_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "fit_method": "map" if posterior is None else "map+nuts",
        "k": k,
        "d": d,
        "columns": columns,
        "settings": settings,
        "arrays_sha256": hashlib.sha256(npz).hexdigest(),
        **tree,
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, payload in (
            (_MANIFEST, json.dumps(manifest, indent=1, allow_nan=False).encode()),
            (_ARRAYS, npz),
        ):
            zf.writestr(zipfile.ZipInfo(name, _DATE), payload)
    return out.getvalue()


def loads(data: bytes, source: str = "the model file") -> SavedModel:
    """Read the bytes of a saved model (see `load`); `source` names them in messages."""
    refit = "save the model again from its fit (bm.save or `bayesmix fit --save`)"
    try:
        manifest, npz = _unpack(data)
    except _Invalid as exc:
        raise DataError(
            f"{source} is not a bayesmix model file ({exc}); give a file written by bm.save or "
            "`bayesmix fit --save`"
        ) from None
    except Exception as exc:  # a damaged archive fails in many ways; all mean the same here
        raise DataError(
            f"{source} is truncated or corrupted ({type(exc).__name__}: {exc}); {refit}"
        ) from None
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DataError(f"{source} has an unknown format version {version!r}; {refit}")
    if version > FORMAT_VERSION:
        raise DataError(
            f"{source} uses model format version {version}, newer than this bayesmix "
            f"reads (up to {FORMAT_VERSION}; it was written by bayesmix "
            f"{manifest.get('bayesmix_version')}): upgrade bayesmix (pip install -U bayesmix)"
        )
    if hashlib.sha256(npz).hexdigest() != manifest.get("arrays_sha256"):
        raise DataError(
            f"{source} is corrupted: the checksum (SHA-256) of its arrays does not match the "
            f"manifest; {refit}"
        )
    try:
        arrays = _read_npz(npz)
        fit = _decode(manifest["fit"], arrays, "fit")
        posterior = _decode(manifest["posterior"], arrays, "posterior")
        model = SavedModel(
            fit=fit,
            posterior=posterior,
            columns=list(manifest["columns"]),
            meta={
                key: manifest[key]
                for key in ("bayesmix_version", "created", "fit_method", "k", "d", "settings")
            }
            | {"format_version": version},
        )
        _check_loaded(model)
    except _Incompatible as exc:
        raise DataError(f"{source} cannot be read by this bayesmix: {exc}") from None
    except Exception as exc:
        raise DataError(f"{source} is corrupted ({type(exc).__name__}: {exc}); {refit}") from None
    return model


class _Invalid(Exception):
    """Readable, but not a bayesmix model file."""


class _Incompatible(Exception):
    """A well-formed file whose content this version's classes cannot take."""


def _unpack(data: bytes) -> tuple[dict, bytes]:
    """(manifest, arrays.npz bytes) of the container, checked for shape, not for content."""
    magic, end = b"PK\x03\x04", b"PK\x05\x06"
    if not data:
        raise _Invalid("it is empty")
    if not data.startswith(magic):
        if magic.startswith(data):
            raise ValueError("it ends after its first bytes")
        raise _Invalid("it does not start like a ZIP archive")
    # A saved file ends with the archive's end record (no comment), which points just before
    # itself: a truncated file may still end with the end record of the arrays.npz inside it.
    if data[-22:-18] != end:
        raise ValueError("the end of the archive is missing")
    cd_size, cd_offset, comment = struct.unpack("<LLH", data[-10:])
    if comment or (cd_offset != 0xFFFFFFFF and cd_offset + cd_size + 22 != len(data)):
        raise ValueError("the end of the archive is missing")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        if sorted(names) != sorted([_MANIFEST, _ARRAYS]):
            raise _Invalid(f"it holds {names}, not {[_MANIFEST, _ARRAYS]}")
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise _Invalid(f"{info.filename} is compressed; model files store it as is")
        manifest = json.loads(zf.read(_MANIFEST).decode("utf-8"))
        npz = zf.read(_ARRAYS)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise _Invalid(f"its manifest does not declare format {FORMAT_NAME!r}")
    return manifest, npz


def _read_npz(npz: bytes) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(npz)) as zf:
        if any(info.compress_type != zipfile.ZIP_STORED for info in zf.infolist()):
            raise ValueError("arrays.npz holds compressed members")
    with np.load(io.BytesIO(npz), allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    for name, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ValueError(f"array {name} has the non-numeric dtype {a.dtype}")
    return arrays


def _check_columns(columns: Sequence[str] | None, d: int) -> list[str]:
    if columns is None:
        return [f"x{j}" for j in range(d)]
    if isinstance(columns, str):
        columns = [columns]
    columns = list(columns)
    if len(columns) != d or not all(isinstance(c, str) and c for c in columns):
        raise SpecError(f"columns must be {d} non-empty strings (one per column), got {columns!r}")
    if len(set(columns)) != d:
        raise SpecError(f"columns must be distinct, got {columns!r}")
    return columns


def _check_loaded(model: SavedModel) -> None:
    if not isinstance(model.fit, MAPResult):
        raise ValueError(f"its fit is a {type(model.fit).__name__}, not a MAPResult")
    if model.posterior is not None and not isinstance(model.posterior, Posterior):
        raise ValueError(f"its posterior is a {type(model.posterior).__name__}")
    k, d = model.meta["k"], model.meta["d"]
    if np.shape(model.fit.params.weights) != (k,) or np.shape(model.fit.params.locs) != (k, d):
        raise ValueError(f"its parameters do not have K = {k} components in D = {d} dimensions")
    _check_columns(model.columns, d)


# --- The generic tree encoding (see docs/format.md) -----------------------------------------


def _is_record(obj: object) -> bool:
    """A NamedTuple instance or a dataclass instance."""
    return (isinstance(obj, tuple) and hasattr(obj, "_fields")) or (
        dataclasses.is_dataclass(obj) and not isinstance(obj, type)
    )


def _record_fields(cls: type) -> tuple[str, ...]:
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)
    return tuple(cls._fields)


def _plain(obj: object) -> bool:
    """JSON-ready as is: None, bool, str, int, finite float; lists and str-keyed dicts of those."""
    if obj is None or isinstance(obj, bool | str | int):
        return type(obj) in (type(None), bool, str, int)
    if type(obj) is float:
        return math.isfinite(obj)
    if type(obj) is list:
        return all(_plain(v) for v in obj)
    if type(obj) is dict:
        return all(isinstance(key, str) and _plain(v) for key, v in obj.items())
    return False


def _encode(obj: object, name: str, arrays: dict[str, np.ndarray]) -> dict:
    """One node of the manifest's tree; arrays go to `arrays` under a dotted name."""
    if _plain(obj):
        return {"value": obj}
    if type(obj) is float:
        return {"float": "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, np.generic | np.ndarray) or type(obj).__module__.startswith("jax"):
        a = np.asarray(obj)
        if a.dtype.kind not in "biuf":
            raise SpecError(f"cannot save {name}: arrays of dtype {a.dtype} are not supported")
        key = name
        while key in arrays:
            key += "_"
        arrays[key] = a
        return {"array": key, "scalar": True} if isinstance(obj, np.generic) else {"array": key}
    if _is_record(obj):
        cls = type(obj)
        if _registry().get(cls.__name__) is not cls:
            raise SpecError(f"cannot save {name}: {cls.__qualname__} is not a bayesmix result type")
        fields = {f: _encode(getattr(obj, f), f"{name}.{f}", arrays) for f in _record_fields(cls)}
        return {"type": cls.__name__, "fields": fields}
    if isinstance(obj, dict) and all(isinstance(key, str) for key in obj):
        return {"dict": {key: _encode(v, f"{name}.{key}", arrays) for key, v in obj.items()}}
    if isinstance(obj, list | tuple):
        items = [_encode(v, f"{name}.{j}", arrays) for j, v in enumerate(obj)]
        return {"tuple" if isinstance(obj, tuple) else "list": items}
    raise SpecError(f"cannot save {name}: values of type {type(obj).__name__} are not supported")


def _decode(node: object, arrays: dict[str, np.ndarray], where: str) -> object:
    """Inverse of `_encode`."""
    if node is None and where == "posterior":
        return None
    if not isinstance(node, dict):
        raise ValueError(f"{where} is not a node of the format")
    if "value" in node:
        return node["value"]
    if "float" in node:
        return float({"nan": "nan", "inf": "inf", "-inf": "-inf"}[node["float"]])
    if "array" in node:
        a = arrays[node["array"]]
        return a[()] if node.get("scalar") else a
    if "dict" in node:
        return {key: _decode(v, arrays, f"{where}.{key}") for key, v in node["dict"].items()}
    if "list" in node or "tuple" in node:
        items = [_decode(v, arrays, f"{where}.{j}") for j, v in enumerate(node.get("list", []))]
        items += [_decode(v, arrays, f"{where}.{j}") for j, v in enumerate(node.get("tuple", []))]
        return items if "list" in node else tuple(items)
    name = node["type"]
    cls = _registry().get(name)
    if cls is None:
        raise _Incompatible(f"{where} is a {name!r}, a type this bayesmix does not know")
    values = {key: _decode(v, arrays, f"{where}.{key}") for key, v in node["fields"].items()}
    known = _record_fields(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise _Incompatible(
            f"{where} ({name}) has field(s) {unknown} that this bayesmix does not know (the file "
            "comes from a newer bayesmix): upgrade bayesmix"
        )
    try:
        return cls(**values)
    except TypeError as exc:
        missing = sorted(set(known) - set(values))
        raise _Incompatible(
            f"{where} ({name}) lacks field(s) {missing} that this bayesmix needs ({exc}): "
            "fit and save the model again"
        ) from None


@functools.cache
def _registry() -> dict[str, type]:
    """The result types a model file may name: MAPResult, Posterior and every NamedTuple or
    dataclass their fields are annotated with (Params, Priors, Mixture, ...), recursively."""
    from . import model, result

    found: dict[str, type] = {}

    def visit(tp: object) -> None:
        if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or hasattr(tp, "_fields")):
            if tp.__module__.startswith("bayesmix.") and found.setdefault(tp.__name__, tp) is tp:
                try:
                    hints = typing.get_type_hints(tp)
                except Exception:  # an annotation that cannot be resolved names no result type
                    hints = {}
                for hint in hints.values():
                    visit(hint)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    for module in (result, model):
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__.startswith("bayesmix"):
                visit(value)
    visit(MAPResult)
    visit(Posterior)
    return found

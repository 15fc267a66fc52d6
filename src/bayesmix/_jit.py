"""Compilation: persistent caches and size-dependent compiler options.

Compile time is the cold cost of every workflow, and tracing (running the Python that builds
a program) is most of the warm cost. Three measures keep both low:
- JAX's persistent compilation cache in the user's cache folder (`BAYESMIX_CACHE_DIR`, else
  `$XDG_CACHE_HOME/bayesmix/jax`, else `~/.cache/bayesmix/jax`), so a second run loads
  executables instead of compiling them;
- an export cache beside it: each program, once traced, is saved with `jax.export` (StableHLO,
  no pickle), keyed by bayesmix's source, JAX's version, the static arguments and the input
  shapes; a later process deserializes it instead of tracing again (measured: the seed
  workflow's NUTS stage 3.8 s -> 1.0 s warm);
- both caches together are kept under a size (`BAYESMIX_CACHE_SIZE`, default 1G): at most
  once a day, a background thread removes the least recently used files beyond it, so that
  programs of older bayesmix or JAX versions and of past data shapes do not pile up;
- `sized_jit`: programs whose work is small (the seed's 5 points) are compiled with XLA's
  cheap settings, which compile 2-3x faster and run as fast at that size; large problems get
  the fully optimized build;
- loading an exported program that calls no LAPACK routine skips JAX's LAPACK set-up, which
  imports SciPy (`_lapack_needed`; measured: warm seed `sample_nuts` 0.85 s -> 0.5-0.65 s).

Lazy imports: NumPyro, BlackJAX and Optax are needed only to trace a program (they are
imported inside the traced functions), so a warm run, which loads every program from the
export cache, never imports them (measured: `import bayesmix` 1.6 s -> 0.6 s, JAX alone
0.55 s).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp

from .errors import warn

__all__ = [
    "cache_dir",
    "enable_compilation_cache",
    "full_precision",
    "parse_size",
    "prune_cache",
    "serializable",
    "sized_jit",
]

# Below this many (rows x components x dims) the cheap compile wins (measured on the seed
# workflow: NUTS compile 7.0 s -> 3.2 s, same run time).
SMALL_WORK = 1_000_000
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
_UNKNOWN_OPTION = re.compile(r"No such compile option: '(\w+)'")
_EXPORT_DIR: Path | None = None  # set by enable_compilation_cache
CACHE_SIZE = 1 << 30  # bytes, unless BAYESMIX_CACHE_SIZE says otherwise
PRUNE_EVERY_S = 24 * 3600  # how often the caches' size is checked
_PRUNED = ".pruned"  # marker file: its time is the last check's
_JAX_ENTRY = re.compile(r".+-[0-9a-f]{64}-(cache|atime)")
_EXPORTED_ENTRY = re.compile(r".+-[0-9a-f]{32}|\..+\.tmp")  # programs, unfinished writes
_SOURCE_HASH: str | None = None
_LAPACK = threading.local()  # .skip: lowering an exported program that calls no LAPACK


def cache_dir() -> Path:
    """Where compiled programs are kept between runs."""
    if os.environ.get("BAYESMIX_CACHE_DIR"):
        return Path(os.environ["BAYESMIX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bayesmix" / "jax"


def enable_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache and bayesmix's export cache in `cache_dir()`,
    unless the user has configured a JAX cache already. Failure to create the folder only
    disables the caches."""
    global _EXPORT_DIR
    if jax.config.jax_compilation_cache_dir:
        return
    path = cache_dir()
    try:
        (path / "exported").mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _EXPORT_DIR = path / "exported"
    limit = CACHE_SIZE
    if os.environ.get("BAYESMIX_CACHE_SIZE"):
        try:
            limit = parse_size(os.environ["BAYESMIX_CACHE_SIZE"])
        except ValueError as exc:
            warn(f"BAYESMIX_CACHE_SIZE: {exc}; using 1G", UserWarning)
    threading.Thread(target=prune_cache, args=(path, limit), daemon=True).start()


def parse_size(text: str) -> int:
    """A byte count: 512M, 4G, 1.5GiB, 1000000 (K, M, G, T are powers of 1024)."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        value = float(t[:-1] if t[-1:] in units else t) * units.get(t[-1:], 1)
    except (ValueError, IndexError):
        raise ValueError(f"{text!r} is not a size; e.g. 512M or 4G") from None
    if not 0 <= value < 2**63:
        raise ValueError(f"{text!r} is not a size; e.g. 512M or 4G")
    return int(value)


def prune_cache(
    path: Path,
    limit: int,
    every_s: float = PRUNE_EVERY_S,
    min_age_s: float = 3600.0,
    now: float | None = None,
) -> None:
    """Keep the caches' files in `path` within `limit` bytes: when they exceed it, remove the
    least recently used (last read or written) down to 3/4 of it, sparing those used in the
    last `min_age_s` (another process may be reading them). Only the caches' own files count
    and go (JAX's `NAME-HASH-cache` and the export cache's `exported/NAME-HASH`): the folder
    may be one the user shares with other files. Runs at most once per `every_s` (the marker
    file's time); any error only ends the pruning."""
    marker = path / _PRUNED
    now = time.time() if now is None else now
    try:
        if now - marker.stat().st_mtime < every_s:
            return
    except OSError:
        pass
    try:
        marker.touch()
        os.utime(marker, (now, now))
        files = []
        for folder, pattern in ((path, _JAX_ENTRY), (path / "exported", _EXPORTED_ENTRY)):
            for f in folder.iterdir() if folder.is_dir() else ():
                if pattern.fullmatch(f.name) and f.is_file():
                    st = f.stat()
                    files.append((max(st.st_atime, st.st_mtime), st.st_size, f))
        total = sum(size for _, size, _ in files)
        for used, size, f in sorted(files, key=lambda t: t[0]):
            if total <= limit * 3 // 4 or now - used < min_age_s:
                break
            f.unlink(missing_ok=True)
            total -= size
    except OSError:
        pass


@functools.cache
def fast_compile() -> dict:
    """The cheap build's XLA options that this JAX knows (newer XLAs drop options: JAX 0.12
    refused every program compiled with `xla_cpu_use_fusion_emitters`), found by compiling an
    empty program once."""
    options = dict(_FAST_COMPILE)
    while options:
        try:
            jax.jit(lambda: jnp.zeros(()), compiler_options=options).lower().compile()
            break
        except Exception as exc:  # noqa: BLE001 - XLA's error names the option it lacks
            unknown = _UNKNOWN_OPTION.search(str(exc))
            if unknown is None or unknown.group(1) not in options:
                return {}
            del options[unknown.group(1)]
    return options


def full_precision(fun: Callable) -> Callable:
    """`fun`, traced with matrix products in the precision of their dtype. JAX's default lets
    a GPU take float32 products in TF32 (a 10-bit mantissa): on an H100 that put float32 E-step
    statistics 3e-3 away from float64's, against 1e-6 in full float32 precision."""

    @functools.wraps(fun)
    def traced(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fun(*args, **kwargs)

    return traced


def serializable(cls: type) -> type:
    """Class decorator: let a NamedTuple cross `jax.export` serialization (program inputs
    and outputs of bayesmix's own types)."""
    jax.export.register_namedtuple_serialization(cls, serialized_name=f"bayesmix.{cls.__name__}")
    return cls


def _source_hash() -> str:
    """Hash of bayesmix's source files: any code change invalidates exported programs."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        h = hashlib.sha256(jax.__version__.encode())
        for path in sorted(Path(__file__).parent.rglob("*.py")):
            h.update(path.read_bytes())
        _SOURCE_HASH = h.hexdigest()
    return _SOURCE_HASH


# The abstract value jit sees for an argument (shape, dtype, weak type); older JAX has no
# jax.typeof.
_typeof = getattr(jax, "typeof", None) or jax.api_util.shaped_abstractify


def _is_key(leaf) -> bool:
    return jnp.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)


class sized_jit:  # noqa: N801 (used like jax.jit)
    """`jax.jit` with a size-dependent build and the export cache.

    Call with `work=` (an int: rows x components x ...) to pick the build for that size (the
    cheap build below `small_work`); the other keyword arguments are static. Positional
    arguments are arrays or pytrees of arrays (Python scalars are converted; PRNG keys are
    passed as their key data).
    """

    def __init__(
        self, fun: Callable, static_argnames: Sequence[str] = (), small_work: int = SMALL_WORK
    ):
        fun = full_precision(fun)
        self._fun = fun
        self._small_work = small_work
        self._static = static_argnames
        self._small = None  # the cheap build, made on first use (`fast_compile`)
        self._large = jax.jit(fun, static_argnames=static_argnames)
        # (small, static, input structure) -> (the exported program, whether it calls LAPACK),
        # or None where exporting failed (then the plain jit path is used, without retrying
        # the export every call).
        self._loaded: dict[tuple, Callable | None] = {}

    def __call__(self, *args, work: int, **static):
        fn, call_args, call_static, lapack = self._resolve(args, work, static)
        with _lapack_needed(lapack):  # the first call lowers the program
            return fn(*call_args, **call_static)

    def lower(self, *args, work: int, **static) -> jax.stages.Lowered:
        """The program for these arguments (arrays or jax.ShapeDtypeStruct), traced (or
        loaded) and lowered, not compiled: its `.compile()` (which releases the GIL) before
        the first call lets calls from several threads at once share one compilation."""
        fn, call_args, call_static, lapack = self._resolve(args, work, static)
        with _lapack_needed(lapack):
            return fn.lower(*call_args, **call_static)

    def _resolve(self, args: tuple, work: int, static: dict) -> tuple[Callable, tuple, dict, bool]:
        """(the compiled function, its positional arguments, its static ones, whether lowering
        it may need LAPACK) for a call."""
        # The cheap build is a CPU measurement: elsewhere compile time is not the bottleneck.
        small = work < self._small_work and jax.default_backend() == "cpu"
        if small and self._small is None:
            self._small = jax.jit(
                self._fun, static_argnames=self._static, compiler_options=fast_compile()
            )
        plain = self._small if small else self._large
        if _EXPORT_DIR is None:
            return plain, args, static, True
        leaves, tree = jax.tree.flatten(args)
        keys = [_is_key(leaf) for leaf in leaves]
        # The leaves go to the program as they are: its C++ dispatch copies NumPy input and makes
        # Python scalars weakly typed (a Python-side device_put cost ~0.2 ms a call, half of a
        # 1-row classification).
        flat = [jax.random.key_data(v) if k else v for v, k in zip(leaves, keys, strict=True)]
        signature = (
            small,
            tuple(sorted(static.items())),
            tree,
            tuple((_typeof(v), k) for v, k in zip(flat, keys, strict=True)),
        )
        if signature not in self._loaded:
            try:
                self._loaded[signature] = self._load_or_export(signature, keys, flat, static)
            except Exception:  # noqa: BLE001 - the cache must never break a computation
                self._loaded[signature] = None
        loaded = self._loaded[signature]
        if loaded is None:
            return plain, args, static, True
        call, lapack = loaded
        return call, tuple(flat), {}, lapack

    def _load_or_export(
        self, signature: tuple, keys: list, flat: list, static: dict
    ) -> tuple[Callable, bool]:
        from .io import atomic_write

        small, _, tree, _ = signature
        spec = repr(
            (
                self._fun.__module__,
                self._fun.__qualname__,
                _source_hash(),
                jax.config.jax_enable_x64,
                jax.default_backend(),
                signature,
            )
        )
        name = f"{self._fun.__name__}-{hashlib.sha256(spec.encode()).hexdigest()[:32]}"
        path = _EXPORT_DIR / name
        if path.exists():
            data = path.read_bytes()
            exported = jax.export.deserialize(bytearray(data))
        else:

            def program(*flat_args):
                leaves = [
                    jax.random.wrap_key_data(v) if k else v
                    for v, k in zip(flat_args, keys, strict=True)
                ]
                return self._fun(*jax.tree.unflatten(tree, leaves), **static)

            exported = jax.export.export(jax.jit(program))(*flat)
            data = bytes(exported.serialize())
            atomic_write(path, data)
        call = jax.jit(exported.call, compiler_options=fast_compile() if small else None)
        return call, b"lapack" in data  # the custom calls' targets are named in the bytes


@contextlib.contextmanager
def _lapack_needed(needed: bool):
    """Lowering an exported program on the CPU, JAX readies LAPACK whatever the program calls,
    which imports SciPy's linalg (0.3-0.5 s of a warm run that imports nothing else of SciPy):
    for a program that calls no LAPACK routine it is skipped."""
    if needed:
        yield
        return
    _skip_lapack_hook()
    before = getattr(_LAPACK, "skip", False)
    _LAPACK.skip = True
    try:
        yield
    finally:
        _LAPACK.skip = before


@functools.cache
def _skip_lapack_hook() -> None:
    """Wrap JAX's `_ensure_backends_initialized` (LAPACK's set-up for exported programs, a
    private function: where it is missing, nothing changes) to obey `_LAPACK.skip`."""
    try:
        from jax._src.export import _export
    except ImportError:  # pragma: no cover
        return
    ensure = getattr(_export, "_ensure_backends_initialized", None)
    if ensure is None:  # pragma: no cover
        return

    def guarded(platforms):
        if not getattr(_LAPACK, "skip", False):
            ensure(platforms)

    _export._ensure_backends_initialized = guarded

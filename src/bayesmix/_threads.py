"""Compiled programs side by side on the CPU's cores.

XLA runs a program called from several threads at once, each call on the calling thread's core;
one program (a NUTS chain, an E-step's loop over blocks of rows) keeps one core busy. Independent
calls (chains; the E-step's statistics of disjoint row ranges, which add up) therefore run in a
thread pool, one thread per core. On an accelerator the device is the parallel hardware: one
call at a time.

`prefetch` overlaps reading with computing: a background thread produces the next item of an
iterator (a file's next chunk: Parquet decoding and NumPy conversions release the GIL) while
the caller computes on the current one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

import jax

__all__ = ["cores", "prefetch", "progress_bar", "thread_map"]

T = TypeVar("T")
R = TypeVar("R")


def cores() -> int:
    """How many programs to run at once: the CPU cores this process may use (1 on an
    accelerator)."""
    if jax.default_backend() != "cpu":
        return 1
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)


#: Work (rows x components x steps, as each fitter counts it) from which a progress display
#: is shown by default.
LONG_WORK = 10**7
#: Off a terminal (a log file, a pipe) the progress is a line this often.
LOG_EVERY_S = 60.0


def progress_bar(progress: bool | None, work: int, *, total: float, unit: str, desc: str,
                 bar_format: str | None = None):  # fmt: skip
    """The progress display of a long computation (`update(k)`, `n`, `set_postfix(...)`,
    `close()`): None shows it for `work` >= LONG_WORK, True always, False never. At a terminal
    (or in a notebook) it is tqdm's bar; elsewhere a plain line every LOG_EVERY_S seconds, e.g.
    "NUTS: 3,200/8,000 steps (40%), 2.5 min, ~3.8 min left", and a last one at the end if any
    was written (always for True), so that runs under a minute stay silent in logs (tqdm's bar
    wrote carriage returns there). Notebooks show nothing unless asked (True)."""
    from tqdm.auto import tqdm  # numpyro's dependency; imported here to keep imports fast

    notebook = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)
    shown = bool(progress) or (progress is None and work >= LONG_WORK and not notebook)
    if shown and not (notebook or sys.stderr.isatty()):
        return _Lines(total, unit, desc, final=progress is True)
    return tqdm(total=total, unit=unit, desc=desc, leave=False, bar_format=bar_format,
                disable=not shown)  # fmt: skip


class _Lines:
    """tqdm's bar as lines of text, for log files: see `progress_bar`."""

    def __init__(self, total: float, unit: str, desc: str, *, final: bool):
        self.total, self.unit, self.desc, self.final = total, unit, desc, final
        self.n = 0
        self._start = self._last = time.perf_counter()
        self._postfix = ""

    def update(self, k: float = 1) -> None:
        self.n += k
        if time.perf_counter() - self._last >= LOG_EVERY_S:
            self._write()

    def set_postfix(self, **values) -> None:
        self._postfix = "".join(f", {k} {v}" for k, v in values.items())

    def close(self) -> None:
        if self.final or self._last > self._start:  # (a line was written)
            self._write()

    def _write(self) -> None:
        self._last = now = time.perf_counter()
        elapsed = now - self._start
        n = f"{self.n:,}" if float(self.n).is_integer() else f"{self.n:,.2f}"
        done = self.n / self.total if self.total else 1.0
        left = f", ~{_duration(elapsed * (1 - done) / done)} left" if 0 < done < 1 else ""
        line = f"{self.desc}: {n}/{self.total:,} {self.unit}s ({100 * done:.0f}%), "
        print(f"{line}{_duration(elapsed)}{left}{self._postfix}", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    """3.2 s, 2.5 min, 1.3 h."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def thread_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    stop: threading.Event | None = None,
    tick: Callable[[], None] | None = None,
) -> list[R | None]:
    """[fn(item) for item in items], `workers` at a time, in order. On Ctrl-C (or any error)
    the items not yet started are dropped and the exception is raised at once; with a `stop`
    event, Ctrl-C sets it instead, waits for the items started (fn should return soon once
    stop is set) and returns their results, None for the others. `tick` is called in the
    calling thread every 0.1 s while the items run, and once at the end (a progress bar's
    updates: tqdm's lock, taken from the items' threads, deadlocked a test)."""
    items = list(items)
    if stop is None and tick is None and (workers <= 1 or len(items) <= 1):
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max(1, min(workers, len(items))))
    try:
        futures = [pool.submit(fn, item) for item in items]
        try:
            # Waits of 0.1 s at most: the main thread handles Ctrl-C between them (a wait
            # without a timeout defers it to the end of the items).
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                for f in done:
                    f.result()  # an item's error, at once
                if tick is not None:
                    tick()
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            if stop is None:
                raise
            stop.set()
            return [None if f.cancel() else f.result() for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


_reader: ThreadPoolExecutor | None = None
_END = object()


def prefetch(items: Iterable[T]) -> Iterator[T]:
    """The items of `items`, the next one produced by a background thread while the caller
    works on the current one: at most two exist at once (the caller's and the next). An
    exception raised by `items` is raised here, in its place in the sequence.

    One reader thread serves every call, for the life of the process: memory a thread
    allocates stays in that thread's allocator arena, and a fresh thread per pass over a
    file grew the peak memory of a fit 2.5x (measured under a 128 MiB budget)."""
    global _reader
    if _reader is None:
        _reader = ThreadPoolExecutor(1, thread_name_prefix="bayesmix-reader")
    it = iter(items)
    ahead = _reader.submit(next, it, _END)
    while (item := ahead.result()) is not _END:
        ahead = _reader.submit(next, it, _END)
        yield item

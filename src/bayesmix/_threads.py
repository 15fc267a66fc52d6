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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

import jax

__all__ = ["cores", "prefetch", "show_progress", "thread_map"]

T = TypeVar("T")
R = TypeVar("R")


def cores() -> int:
    """How many programs to run at once: the CPU cores this process may use (1 on an
    accelerator)."""
    if jax.default_backend() != "cpu":
        return 1
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)


def show_progress(progress: bool | None, work: int) -> bool:
    """Whether a long computation shows a progress bar: `progress`, or by default when its
    `work` is large (>= 1e7, e.g. rows x components x steps) and stderr is a terminal."""
    if progress is None:
        return work >= 10**7 and sys.stderr.isatty()
    return bool(progress)


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

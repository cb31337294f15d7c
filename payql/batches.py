"""Bounded concurrency for the jobs that call providers: `payql payouts run` and `payql reconcile`.

A provider call is blocking network I/O (the SDKs are synchronous) and most of a job's time is spent waiting on it,
so a job runs its per-object work in a pool of at most `concurrency` threads. Each piece of work opens its own units
of work (`Database.uow()` makes a session per call, never shared between threads), and every result comes back to
the calling thread in the order of the input, where the job counts it: totals are exact and the log reads the same
at any concurrency. At concurrency 1 the work runs inline on the calling thread, as it did before there was a pool.

`DEFAULT_CONCURRENCY` is 16: 10,000 payouts at 50 ms a call take 31 s of waiting (8 would take 62 s); it stays
under Stripe's default limit of 100 live requests per second at real latencies (a transfer takes 200-500 ms), within
the YooKassa adapter's pool of 16 threads, and well within the database pool (24 connections on SQLite, 30 on
PostgreSQL; one job thread holds at most one at a time). It is also `MAX_CONCURRENCY`: the YooKassa adapter runs
its calls on 16 threads and times each out from the moment it is queued, so a 17th call in flight could time out
before it was sent (safe, as every call is keyed, but a spurious "try again later"). `--concurrency` lowers it.
"""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final, TypeVar

DEFAULT_CONCURRENCY: Final = 16
MAX_CONCURRENCY: Final = 16

T = TypeVar("T")
R = TypeVar("R")


def check_concurrency(concurrency: int) -> int:
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be 1 to {MAX_CONCURRENCY}, not {concurrency}")
    return concurrency


def each(items: Iterable[T], work: Callable[[T], R], concurrency: int) -> Iterator[tuple[T, Future[R]]]:
    """`work(item)` for every item, at most `concurrency` at once; yields `(item, done future)` in input order.

    The caller reads each outcome with `future.result()`, which returns the value or raises what the work raised,
    so its error handling runs on its own thread. Each call runs in a copy of the caller's context (context
    variables such as `Database.dry_run`'s). Closing the iterator early (an exception in the caller, Ctrl-C) cancels
    the work not yet started and waits for the calls in flight.
    """
    check_concurrency(concurrency)
    if concurrency == 1:
        for item in items:
            future: Future[R] = Future()
            try:
                future.set_result(work(item))
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future, as the pool does
                future.set_exception(exc)
            yield item, future
        return
    window: deque[tuple[T, Future[R]]] = deque()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="payql-job")
    try:
        for item in items:
            window.append((item, pool.submit(contextvars.copy_context().run, work, item)))
            # a few waiting per worker keep every thread busy while the oldest is handed back; no more are queued
            if len(window) >= 4 * concurrency:
                yield _done(window.popleft())
        while window:
            yield _done(window.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _done(pair: tuple[T, Future[R]]) -> tuple[T, Future[R]]:
    item, future = pair
    future.exception()  # wait for it, whatever the outcome
    return item, future

"""The worker threads the HTTP edges run their synchronous work on (one place, for `/graphql` and the webhooks).

Queries are CPU-bound Python under the GIL on SQLite: there they run inline on the event loop (QUERY_THREADS=0,
the default), as a thread would only hold the GIL in the loop's place and add its hop; on PostgreSQL they also
wait on the network, and a few threads serve them. Mutations and webhook deliveries may wait on a provider for up
to PROVIDER_TIMEOUT_MS: each gets its own, larger pool, so that neither a slow provider nor a burst of deliveries
holds up reads, and a burst of deliveries never starves the mutations.

The query pool is payql's own (`Threads`): a read is the hot path, and anyio's hop to a thread and back (its
capacity limiter, its worker's queue, its result relay) cost about 200 Python calls a request, where this pool's
costs about ten (a C queue in, `call_soon_threadsafe` back). Webhook deliveries hop on payql's own threads too:
under load anyio's hop was a twentieth of a delivery's CPU (bench/README.md). The one difference is a cancelled
caller, which stops waiting while its function runs to its end (anyio's would wait): nothing follows a delivery in
the route but its answer, a delivery is one transaction, and a provider that gets no answer sends the delivery
again, which the log then applies or answers as a duplicate. Mutations stay on anyio's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from payql.settings import Settings

T = TypeVar("T")


class Pool(Enum):
    QUERIES = "queries"
    MUTATIONS = "mutations"
    WEBHOOKS = "webhooks"


_IDLE_SECONDS = 10.0  # as anyio's worker threads: an idle thread ends, and a later read starts another


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile: nobody waits for this result
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class Threads:
    """At most `size` threads running functions for the event loop, in the caller's context (its context variables),
    in order of submission. A caller cancelled while its function runs stops waiting; the function still runs to its
    end (as a thread cannot be interrupted) and its result is dropped."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = 0

    async def run(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, contextvars.copy_context(), function, args))
        with self._lock:
            if self._running < self._size:  # under the lock: an idle thread may be ending right now (`_work`)
                self._running += 1
                threading.Thread(target=self._work, name=self._name, daemon=True).start()
        return await future

    def _work(self) -> None:
        get, lock = self._queue.get, self._lock
        while True:
            try:
                loop, future, context, function, args = get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with lock:
                    if self._queue.empty():
                        self._running -= 1
                        return
                continue
            try:
                result, error = context.run(function, *args), None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, as anyio does
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, future, result, error)
            del loop, future, context, function, args, result, error  # hold nothing while idle


class Workers:
    def __init__(self, settings: Settings) -> None:
        self._sizes = {
            Pool.QUERIES: settings.query_thread_count,
            Pool.MUTATIONS: settings.mutation_threads,
        }
        self._limiters: dict[Pool, anyio.CapacityLimiter] = {}
        self._queries_inline = settings.queries_inline
        self._queries = Threads(settings.query_thread_count, "payql-query")
        self._webhooks = Threads(settings.mutation_threads, "payql-webhook")

    async def run(self, pool: Pool, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` on a thread of `pool`; a query inline on the event loop when `queries_inline` (SQLite),
        in a copy of the caller's context as on a thread."""
        if pool is Pool.QUERIES:
            if self._queries_inline:
                return contextvars.copy_context().run(function, *args)
            return await self._queries.run(function, *args)
        if pool is Pool.WEBHOOKS:
            return await self._webhooks.run(function, *args)
        limiter = self._limiters.get(pool)
        if limiter is None:  # made on first use: a limiter belongs to the running event loop
            limiter = self._limiters[pool] = anyio.CapacityLimiter(self._sizes[pool])
        return await anyio.to_thread.run_sync(function, *args, limiter=limiter)

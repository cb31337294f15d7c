"""The worker threads the HTTP edges run their synchronous work on (one place, for `/graphql` and the webhooks).

Queries are CPU-bound Python under the GIL on SQLite: few threads serve them best. Mutations and webhook
deliveries may wait on a provider for up to PROVIDER_TIMEOUT_MS: each gets its own, larger pool, so that neither
a slow provider nor a burst of deliveries holds up reads, and a burst of deliveries never starves the mutations.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TypeVar

import anyio
import anyio.to_thread

from payql.settings import Settings

T = TypeVar("T")


class Pool(Enum):
    QUERIES = "queries"
    MUTATIONS = "mutations"
    WEBHOOKS = "webhooks"


class Workers:
    def __init__(self, settings: Settings) -> None:
        self._sizes = {
            Pool.QUERIES: settings.query_thread_count,
            Pool.MUTATIONS: settings.mutation_threads,
            Pool.WEBHOOKS: settings.mutation_threads,
        }
        self._limiters: dict[Pool, anyio.CapacityLimiter] = {}

    async def run(self, pool: Pool, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` on a thread of `pool`."""
        limiter = self._limiters.get(pool)
        if limiter is None:  # made on first use: a limiter belongs to the running event loop
            limiter = self._limiters[pool] = anyio.CapacityLimiter(self._sizes[pool])
        return await anyio.to_thread.run_sync(function, *args, limiter=limiter)

"""Per-caller rate limits (`RATE_LIMIT`, e.g. "120/minute") with the `limits` library: in process by default, in
Redis when `REDIS_URL` is set (so that several replicas share the counts). A sliding window counter per key
(constant cost per request): the signed-in user, or the client address when anonymous."""

from __future__ import annotations

import time

import anyio.to_thread
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter


class RateLimiter:
    def __init__(self, rate: str, redis_url: str | None, *, namespace: str = "payql") -> None:
        self._item = parse(rate)
        self._remote = redis_url is not None
        self._limiter = SlidingWindowCounterRateLimiter(storage_from_string(redis_url or "memory://"))
        self._namespace = namespace

    def _hit(self, key: str) -> int:
        """0 when the request may go on, else the seconds to wait."""
        if self._limiter.hit(self._item, self._namespace, key):
            return 0
        stats = self._limiter.get_window_stats(self._item, self._namespace, key)
        return max(1, int(stats.reset_time - time.time()) + 1)

    async def retry_after(self, key: str) -> int:
        if self._remote:  # a network round trip: off the event loop
            return await anyio.to_thread.run_sync(self._hit, key)
        return self._hit(key)

"""Per-caller rate limits (`RATE_LIMIT`, e.g. "120/minute") with the `limits` library: in process by default, in
Redis when `REDIS_URL` is set (so that several replicas share the counts). A sliding window counter per key
(constant cost per request): the signed-in user, or the client address when anonymous.

Redis failing closed would refuse every request, and failing with a 500 is worse: while Redis does not answer,
counting falls back to in-process counters (each replica then limits on its own, so the effective limit is at most
the number of replicas times the rate), a WARNING says so once per outage, `/readyz` shows `degraded`, and Redis
is tried again every `RETRY_SECONDS`. Every limiter of one process that names the same Redis shares that state.
"""

from __future__ import annotations

import logging
import threading
import time

import anyio.to_thread
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

logger = logging.getLogger("payql.ratelimit")

RETRY_SECONDS = 5.0
# A Redis that does not answer must not hold a request for long: its answer only decides a 429.
REDIS_TIMEOUT_SECONDS = 0.5


SWEEP_SECONDS = 1.0


class SweptMemoryStorage(MemoryStorage):
    """The limits library's `MemoryStorage`, its expired counters swept at most once a second. The library starts a
    10 ms `threading.Timer` for its sweep whenever none is alive: at a few hundred requests a second, a thread start
    for about every other request (their Python calls, and the GIL they take from the event loop). Expiry does not
    wait on the sweep (every read of a counter checks its expiry: `MemoryStorage.get`); the sweep only frees the
    memory of the counters nobody reads again."""

    _next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - the library's own hook, by its mangled name
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


class _Counters:
    """Where one process counts for one REDIS_URL (or in memory): Redis while it answers, else in process."""

    def __init__(self, redis_url: str | None) -> None:
        self.remote = redis_url is not None
        self._local = SlidingWindowCounterRateLimiter(SweptMemoryStorage())
        self._redis = (
            SlidingWindowCounterRateLimiter(
                storage_from_string(
                    redis_url,
                    wrap_exceptions=True,
                    socket_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                )
            )
            if redis_url is not None
            else None
        )
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0

    def hit(self, item: RateLimitItem, namespace: str, key: str) -> int:
        """0 when the request may go on, else the seconds to wait."""
        if self._redis is not None and (self._down_since is None or time.monotonic() >= self._retry_at):
            try:
                wait = _hit(self._redis, item, namespace, key)
            except StorageError as exc:  # the type only: its text may carry the URL, and so its password
                self._failed(type(exc.storage_error).__name__)
            else:
                self._answered()
                return wait
        return _hit(self._local, item, namespace, key)

    def check(self) -> bool:
        """Ask Redis now (`/readyz`): True when it answers or none is configured."""
        if self._redis is None:
            return True
        if self._redis.storage.check():
            self._answered()
            return True
        self._failed("no answer to a ping")
        return False

    def _failed(self, why: str) -> None:
        with self._lock:
            first = self._down_since is None
            now = time.monotonic()
            if first:
                self._down_since = now
            self._retry_at = now + RETRY_SECONDS
        if first:
            logger.warning("Redis does not answer (%s): rate limits are counted in this process until it does", why)

    def _answered(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            down, self._down_since = self._down_since, None
        if down is not None:
            logger.info("Redis answers again after %.0f s: rate limits are shared again", time.monotonic() - down)


def _hit(limiter: SlidingWindowCounterRateLimiter, item: RateLimitItem, namespace: str, key: str) -> int:
    if limiter.hit(item, namespace, key):
        return 0
    stats = limiter.get_window_stats(item, namespace, key)
    return max(1, int(stats.reset_time - time.time()) + 1)


_COUNTERS: dict[str | None, _Counters] = {}
_COUNTERS_LOCK = threading.Lock()


def _counters(redis_url: str | None) -> _Counters:
    if redis_url is None:
        return _Counters(None)  # in memory: each limiter keeps its own
    with _COUNTERS_LOCK:
        return _COUNTERS.setdefault(redis_url, _Counters(redis_url))


def redis_answers(redis_url: str | None) -> bool:
    """Whether the configured Redis answers a ping now (True without one); blocking, for `/readyz`'s thread."""
    return _counters(redis_url).check() if redis_url is not None else True


class RateLimiter:
    def __init__(self, rate: str, redis_url: str | None, *, namespace: str = "payql") -> None:
        self._item = parse(rate)
        self._counters = _counters(redis_url)
        self._namespace = namespace

    async def retry_after(self, key: str) -> int:
        if self._counters.remote:  # a network round trip: off the event loop
            return await anyio.to_thread.run_sync(self._counters.hit, self._item, self._namespace, key)
        return self._counters.hit(self._item, self._namespace, key)

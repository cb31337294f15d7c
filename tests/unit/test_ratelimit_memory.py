"""The in-process rate limit counters: a hit starts no sweeping thread of its own (the limits library started one
whenever its 10 ms sweep was not running), and the limit holds and lifts as before: expiry is checked on every
read, not left to the sweep."""

from __future__ import annotations

import threading
import time

from limits import parse
from limits.strategies import SlidingWindowCounterRateLimiter

from payql.ratelimit import SweptMemoryStorage


def test_hits_start_at_most_one_sweep_a_second() -> None:
    storage = SweptMemoryStorage()
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("1000000/minute")
    timers = set()
    started = time.monotonic()
    for n in range(300):
        assert limiter.hit(item, "test", f"user-{n % 7}")
        timers.add(id(storage.timer))
        time.sleep(0.001)  # longer than nothing: the library's 10 ms timer ends meanwhile
    elapsed = time.monotonic() - started
    assert len(timers) <= 2 + int(elapsed)  # the one made at start, then one a second at most


def test_the_limit_still_refuses_then_lifts() -> None:
    limiter = SlidingWindowCounterRateLimiter(SweptMemoryStorage())
    item = parse("3/second")
    assert all(limiter.hit(item, "test", "caller") for _ in range(3))
    assert not limiter.hit(item, "test", "caller")
    assert limiter.hit(item, "test", "someone else")
    deadline = time.monotonic() + 5
    while not limiter.hit(item, "test", "caller"):  # the sliding window lets it through within two seconds
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert threading.active_count() < 50

"""Group commit for work that threads submit at the same time: the first thread to arrive runs a group, the threads
that arrive while it runs wait, and the next group holds all of them (flat combining).

`Combiner(run, limit=, key=).submit(job)` returns when `job` has been run by `run(group)`, in this thread or in
another, and raises what `run` recorded as the job's `error`. `run` records each job's result or error on it: what
one job's failure means for the others is its business (the webhook service runs a failed group again one job at
a time). Should `run` itself raise, every job of the group gets that error. Nothing waits to gather a group: a
thread that finds no group running runs its own job at once, alone, so a lone delivery pays no latency; under
load the groups grow by themselves, to the number of threads waiting while the previous group ran (at most
`limit`).

Jobs with the same `key` (the same payment) are never in one group: the second waits for the next one. Jobs are
taken in arrival order otherwise. One group runs at a time per combiner (per process): its transaction holds the
rows of its jobs, and the next group is already gathering.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar


class Job:
    """What a combiner runs: a subclass adds its inputs and results. `settled` is set by the combiner once the
    group that held the job has run; `error`, by `run`, is raised to the thread that submitted the job.

    A waiting job sleeps on a plain lock, taken at its creation and released once to wake it (a job is woken at
    most once: when its group has run, or when it is handed the lead). `threading.Event` would do the same through
    a condition variable, in Python: about twice the CPU per wake-up."""

    __slots__ = ("_wake", "error", "settled")

    def __init__(self) -> None:
        self.settled = False
        self.error: BaseException | None = None
        self._wake = threading.Lock()
        self._wake.acquire()


J = TypeVar("J", bound=Job)


class Combiner(Generic[J]):
    def __init__(self, run: Callable[[list[J]], None], *, limit: int, key: Callable[[J], Hashable]) -> None:
        if limit < 1:
            raise ValueError("a group holds at least one job")
        self._run = run
        self._limit = limit
        self._key = key
        self._lock = threading.Lock()
        self._queue: list[J] = []
        self._running = False

    def submit(self, job: J) -> None:
        """Run `job` in a group; returns once it is settled, raising its `error` if it has one."""
        with self._lock:
            self._queue.append(job)
            lead = not self._running
            self._running = True
        if not lead:
            job._wake.acquire()  # noqa: SLF001 - the combiner's own field: released once, to wake this thread
        if not job.settled:
            self._lead(job)  # no group was running, or the last leader handed on to this job
        if job.error is not None:
            raise job.error

    def _lead(self, own: J) -> None:
        """Run groups until `own` has run, then hand on to the oldest waiting job (or stop: nothing waits)."""
        while not own.settled:
            with self._lock:
                group = self._take()
            try:
                self._run(group)
            except BaseException as exc:  # noqa: BLE001 - raised again in each job's own thread
                for job in group:
                    job.error = exc
            finally:
                for job in group:
                    job.settled = True
                    if job is not own:
                        job._wake.release()  # noqa: SLF001
        with self._lock:
            if self._queue:
                self._queue[0]._wake.release()  # noqa: SLF001 - it finds itself unsettled: it leads
            else:
                self._running = False

    def _take(self) -> list[J]:
        """The next group, under the lock: the oldest jobs, one per key, at most `limit`."""
        group: list[J] = []
        keys: set[Hashable] = set()
        left: list[J] = []
        for job in self._queue:
            key = self._key(job)
            if len(group) < self._limit and key not in keys:
                keys.add(key)
                group.append(job)
            else:
                left.append(job)
        self._queue = left
        return group

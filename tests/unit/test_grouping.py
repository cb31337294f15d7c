"""The combiner behind the webhooks' group commit (payql/services/grouping.py): a lone job runs at once in its own
thread; jobs that arrive while a group runs make the next group; one key per group; errors go to their own job."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from payql.services.grouping import Combiner, Job


class Item(Job):
    __slots__ = ("key", "ran_in", "result")

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.ran_in: int | None = None
        self.result: str | None = None


class Recorder:
    """A `run` that records its groups; the first group can be held until released."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.groups: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, group: list[Item]) -> None:
        self.groups.append([item.key for item in group])
        if len(self.groups) == 1:
            self.started.set()
            assert self.release.wait(10)
        for item in group:
            item.ran_in = threading.get_ident()
            if item.key.startswith("bad"):
                item.error = ValueError(item.key)
            else:
                item.result = f"done {item.key}"


def combiner(run: Recorder, limit: int = 32) -> Combiner[Item]:
    return Combiner(run, limit=limit, key=lambda item: item.key.split("#")[0])


def held(run: Recorder, first: Item, later: list[Item], combine: Combiner[Item]) -> None:
    """Submit `first` (its group is held), then `later` from threads of their own, then release the first group
    once all of `later` wait in the queue."""
    with ThreadPoolExecutor(max_workers=len(later) + 1) as pool:
        futures = [pool.submit(combine.submit, first)]
        assert run.started.wait(10)
        futures += [pool.submit(combine.submit, item) for item in later]
        deadline = time.monotonic() + 10
        while len(combine._queue) < len(later) and time.monotonic() < deadline:
            time.sleep(0.005)
        run.release.set()
        for future in futures:
            with contextlib.suppress(ValueError):  # a job's own error: the test looks at it on the job
                future.result(timeout=10)


def test_a_lone_job_runs_at_once_in_the_thread_that_submitted_it() -> None:
    run = Recorder()
    item = Item("a")
    combiner(run).submit(item)
    assert run.groups == [["a"]]
    assert item.settled
    assert item.result == "done a"
    assert item.ran_in == threading.get_ident()


def test_jobs_that_arrive_while_a_group_runs_make_the_next_group_together() -> None:
    run = Recorder(hold_first=True)
    combine = combiner(run)
    later = [Item(key) for key in "bcde"]
    held(run, Item("a"), later, combine)
    assert run.groups == [["a"], ["b", "c", "d", "e"]]
    assert all(item.result == f"done {item.key}" for item in later)
    assert len({item.ran_in for item in later}) == 1  # one thread ran the group for all


def test_jobs_with_the_same_key_are_never_in_one_group_and_a_group_keeps_its_limit() -> None:
    run = Recorder(hold_first=True)
    combine = combiner(run, limit=3)
    later = [Item(key) for key in ("b", "b#2", "c", "d", "e", "c#2")]
    held(run, Item("a"), later, combine)
    assert run.groups == [["a"], ["b", "c", "d"], ["b#2", "e", "c#2"]]
    assert all(item.settled and item.result for item in later)


def test_an_error_is_raised_in_its_own_jobs_thread_only() -> None:
    run = Recorder(hold_first=True)
    combine = combiner(run)
    later = [Item("b"), Item("bad"), Item("c")]
    held(run, Item("a"), later, combine)
    assert run.groups == [["a"], ["b", "bad", "c"]]
    good, bad = [later[0], later[2]], later[1]
    assert all(item.result and item.error is None for item in good)
    assert isinstance(bad.error, ValueError)
    with pytest.raises(ValueError, match="bad"):  # what `submit` raises for it
        combiner(Recorder()).submit(Item("bad"))


def test_a_run_that_raises_fails_its_whole_group_and_the_next_group_still_runs() -> None:
    calls: list[list[str]] = []

    def run(group: list[Item]) -> None:
        calls.append([item.key for item in group])
        if len(calls) == 1:
            raise RuntimeError("the group's transaction failed")
        for item in group:
            item.result = "ok"

    combine: Combiner[Item] = Combiner(run, limit=8, key=lambda item: item.key)
    first = Item("a")
    with pytest.raises(RuntimeError, match="transaction failed"):
        combine.submit(first)
    second = Item("b")
    combine.submit(second)
    assert calls == [["a"], ["b"]]
    assert second.result == "ok"


def test_a_group_holds_at_least_one_job() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Combiner(Recorder(), limit=0, key=lambda item: item)

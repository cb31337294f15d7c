"""payql/batches.py: at most N calls at once, outcomes in input order, errors handed back, inline at 1."""

from __future__ import annotations

import threading

import pytest

from payql.batches import MAX_CONCURRENCY, check_concurrency, each


class Gauge:
    """Counts the calls running at once; each call waits until `release` so that they pile up."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.threads: set[int] = set()
        self.release = threading.Event()

    def __call__(self, item: int) -> int:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.threads.add(threading.get_ident())
        self.release.wait(timeout=0.01 if item % 7 else 0.05)
        with self.lock:
            self.now -= 1
        if item == 13:
            raise ValueError("thirteen")
        return item * 2


def test_outcomes_come_back_in_input_order_with_at_most_n_at_once() -> None:
    gauge = Gauge()
    results = []
    for item, outcome in each(range(40), gauge, 4):
        if item == 13:
            with pytest.raises(ValueError, match="thirteen"):
                outcome.result()
        else:
            results.append((item, outcome.result()))
    assert results == [(item, item * 2) for item in range(40) if item != 13]
    assert gauge.most <= 4
    assert threading.get_ident() not in gauge.threads


def test_concurrency_1_runs_inline_on_the_calling_thread() -> None:
    gauge = Gauge()
    assert [outcome.result() for _, outcome in each(range(5), gauge, 1)] == [0, 2, 4, 6, 8]
    assert (gauge.most, gauge.threads) == (1, {threading.get_ident()})


def test_closing_early_cancels_what_has_not_started() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> int:
        with lock:
            started.append(item)
        return item

    outcomes = each(range(1000), work, 2)
    next(outcomes)
    outcomes.close()
    assert len(started) < 1000


@pytest.mark.parametrize("wrong", [0, -1, MAX_CONCURRENCY + 1])
def test_concurrency_out_of_bounds_is_refused(wrong: int) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        check_concurrency(wrong)

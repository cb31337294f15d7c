"""Where GraphQL work runs (`payql.workers`): queries inline on the event loop on SQLite by default, on threads on
PostgreSQL or when QUERY_THREADS asks; mutations always on threads. The query pool's threads (`Threads`): results and
exceptions reach the caller, the caller's context variables reach the function, no more than `size` threads run,
idle ones end, and a cancelled caller stops waiting while its function runs to its end."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from conftest import make_settings

from payql import workers
from payql.workers import Pool, Threads, Workers

NAME: contextvars.ContextVar[str] = contextvars.ContextVar("name", default="unset")


def test_results_exceptions_and_context_reach_the_caller() -> None:
    async def main() -> None:
        pool = Threads(2, "test-query")
        assert await pool.run(lambda a, b: a + b, 2, 3) == 5
        assert await pool.run(threading.current_thread) is not threading.current_thread()

        def fail() -> None:
            raise ValueError("refused")

        with pytest.raises(ValueError, match="refused"):
            await pool.run(fail)
        NAME.set("caller")
        assert await pool.run(NAME.get) == "caller"

    asyncio.run(main())


def test_no_more_threads_than_its_size_and_idle_ones_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "_IDLE_SECONDS", 0.05)
    seen: set[int] = set()
    release = threading.Event()

    def work() -> None:
        seen.add(threading.get_ident())
        release.wait(5)

    async def main() -> None:
        pool = Threads(2, "test-query")
        tasks = [asyncio.create_task(pool.run(work)) for _ in range(6)]
        await asyncio.sleep(0.1)
        release.set()
        await asyncio.gather(*tasks)
        assert len(seen) <= 2
        for _ in range(100):  # the idle threads end
            if pool._running == 0:
                break
            await asyncio.sleep(0.05)
        assert pool._running == 0
        assert await pool.run(lambda: "again") == "again"  # and a later call starts one

    asyncio.run(main())


def test_a_cancelled_caller_stops_waiting_and_the_function_still_ends() -> None:
    started, release, ended = threading.Event(), threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        release.wait(5)
        ended.set()
        return "late"

    async def main() -> None:
        pool = Threads(1, "test-query")
        task = asyncio.create_task(pool.run(work))
        assert await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await pool.run(lambda: "next") == "next"  # the one thread was freed: the late result was dropped
        assert ended.is_set()

    asyncio.run(main())


def _on_the_loop(database_url: str, pool: Pool, **overrides: object) -> bool:
    """Whether `Workers.run` ran a function on the event loop's own thread."""

    async def main() -> bool:
        ran_on: int = await Workers(make_settings(database_url, **overrides)).run(pool, threading.get_ident)
        return ran_on == threading.get_ident()

    return asyncio.run(main())


def test_queries_run_on_the_event_loop_on_sqlite_and_on_threads_on_postgresql() -> None:
    sqlite, postgres = "sqlite:///unused.db", "postgresql+psycopg://payql@127.0.0.1/unused"
    assert _on_the_loop(sqlite, Pool.QUERIES)  # QUERY_THREADS=0, the default
    assert not _on_the_loop(sqlite, Pool.QUERIES, query_threads=1)
    assert not _on_the_loop(postgres, Pool.QUERIES)
    for pool in (Pool.MUTATIONS, Pool.WEBHOOKS):  # they may wait on a provider: never on the loop
        assert not _on_the_loop(sqlite, pool)


def test_webhook_deliveries_run_on_payqls_own_webhook_threads() -> None:
    async def main() -> str:
        name: str = await Workers(make_settings("sqlite:///unused.db")).run(
            Pool.WEBHOOKS, lambda: threading.current_thread().name
        )
        return name

    assert asyncio.run(main()) == "payql-webhook"


def test_an_inline_query_gets_the_callers_context_and_keeps_its_own_changes() -> None:
    async def main() -> None:
        pool = Workers(make_settings("sqlite:///unused.db"))
        NAME.set("caller")

        def rename() -> str:
            seen = NAME.get()
            NAME.set("query")
            return seen

        assert await pool.run(Pool.QUERIES, rename) == "caller"
        assert NAME.get() == "caller"  # as on a thread, which runs in a copy of the caller's context

        def fail() -> None:
            raise ValueError("refused")

        with pytest.raises(ValueError, match="refused"):
            await pool.run(Pool.QUERIES, fail)

    asyncio.run(main())

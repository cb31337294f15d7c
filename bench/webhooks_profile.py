"""The webhook route's cost per event, in process and one event at a time: `python bench/webhooks_profile.py`.

Needs BENCH_DATABASE_URL (PostgreSQL; the database is wiped). Seeds paid PaymentIntents at the Stripe fake as
`webhooks_pg.py` does, then sends their signed `payment_intent.succeeded` deliveries through the route's own
function (`_verify_and_process`: verification, the log, the re-fetch, `PaymentService.apply`, the commit) in this
process, serially, so that the figures do not depend on the machine's load: Python calls per event (a
`sys.setprofile` counter) and SQL statements per event (an engine listener), both deterministic, after a warm-up
that has created every ledger shard; then the process CPU per event; `--profile` prints a cProfile listing.

`--threads N` sends the counted and the timed deliveries from N threads at once, as the route's worker threads
do under load, so that deliveries apply in groups (`payql/services/webhooks.py`): it prints the statements per
event and the deliveries per commit, and the CPU per event (the figures then depend on how the groups fell).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from run import SECRET, STRIPE_KEY, WEBHOOK_SECRET, StripeFakeProcess, seed_webhook_payments
from sqlalchemy import event
from webhooks_pg import reset

from payql.bootstrap import bootstrap
from payql.metrics import Metrics
from payql.models.enums import ProviderName
from payql.services import Services
from payql.settings import Settings
from payql.webhooks.routes import _verify_and_process

METRICS = Metrics()  # the app always passes its metrics (processing time and lag per delivery)


def deliver(services: Services, body: bytes, headers: dict[str, str]) -> None:
    outcome = _verify_and_process(
        services, ProviderName.STRIPE, {k.lower(): v for k, v in headers.items()}, body, "127.0.0.1", METRICS
    )
    if getattr(outcome, "value", None) != "processed":
        raise SystemExit(f"a delivery was not processed: {outcome}")


def deliver_all(services: Services, hooks: list[tuple[bytes, dict[str, str]]], threads: int) -> None:
    if threads == 1:
        for body, headers in hooks:
            deliver(services, body, headers)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda hook: deliver(services, *hook), hooks))


def measure(
    services: Services,
    counted: list[tuple[bytes, dict[str, str]]],
    timed: list[tuple[bytes, dict[str, str]]],
    *,
    profile: bool,
    threads: int = 1,
) -> None:
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(" ".join(statement.split())[:100])

    event.listen(services.db.engine, "before_cursor_execute", note)
    calls = 0

    def count(_frame: FrameType, kind: str, _arg: Any) -> None:
        nonlocal calls
        calls += kind == "call"

    commits = 0

    def committed(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(services.db.engine, "commit", committed)
    if threads == 1:  # the counter is not shared between threads
        sys.setprofile(count)
    deliver_all(services, counted, threads)
    sys.setprofile(None)
    event.remove(services.db.engine, "before_cursor_execute", note)  # the timed deliveries run as the app's do
    event.remove(services.db.engine, "commit", committed)
    if threads == 1:
        print(f"Python calls per event: {calls / len(counted):.0f}")
    print(f"SQL statements per event: {len(statements) / len(counted):.1f} ({commits / len(counted):.2f} commits)")
    for statement, n in Counter(statements).most_common():
        print(f"  {n / len(counted):.2f}x {statement}")
    profiler = cProfile.Profile(time.process_time) if profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    deliver_all(services, timed, threads)
    if profiler:
        profiler.disable()
    label = "with the profiler" if profiler else f"{threads} thread(s), in process"
    print(f"CPU per event ({label}): {1000 * (time.process_time() - started) / len(timed):.2f} ms")
    if profiler:
        pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(60)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=400, help="deliveries before measuring (every shard exists)")
    parser.add_argument("--counted", type=int, default=20, help="deliveries whose calls and statements are counted")
    parser.add_argument("--timed", type=int, default=180, help="deliveries whose CPU is measured")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed deliveries (one thread)")
    parser.add_argument("--threads", type=int, default=1, help="threads sending the deliveries at once")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url or not url.startswith("postgresql"):
        raise SystemExit("set BENCH_DATABASE_URL to a PostgreSQL database (it is wiped)")
    reset(url)
    fake = StripeFakeProcess()
    try:
        hooks = seed_webhook_payments(url, fake, args.warm + args.counted + args.timed)
        os.environ.update(
            {
                "DATABASE_URL": url,
                "JWT_SECRET": SECRET,
                "LOG_LEVEL": "WARNING",
                "STRIPE_SECRET_KEY": STRIPE_KEY,
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "STRIPE_API_BASE": fake.url,
            }
        )
        services = bootstrap(Settings())
        for body, headers in hooks[: args.warm]:
            deliver(services, body, headers)
        if args.profile and args.threads > 1:
            raise SystemExit("--profile profiles one thread: leave --threads at 1")
        counted, timed = hooks[args.warm : -args.timed], hooks[-args.timed :]
        measure(services, counted, timed, profile=args.profile, threads=args.threads)
        services.close()
    finally:
        fake.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

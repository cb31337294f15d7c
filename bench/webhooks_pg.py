"""Webhook ingestion on PostgreSQL: `make bench-webhooks` (needs BENCH_DATABASE_URL; the database is wiped,
and made on its server if it does not exist: bench/pgdb.py).

Migrates a fresh schema, seeds PaymentIntents paid at the Stripe fake (its own process) with their payments in
payql (enroll payments, automatic capture: each `payment_intent.succeeded` posts the escrow capture, which moves the
platform-wide `provider_cash` and `escrow` accounts: the rows every capture used to queue on), then serves the bench
app (payql's `create_app` as `payql serve` builds it, plus the minimal `POST /raw/webhook` of `bench_app.py`) with
two workers as `payql serve --workers 2` runs them (a socket each) and sends every signed delivery once,
`--connections` at a time, in interleaved chunks:
a chunk through `/webhooks/stripe` (verification, the webhook log, the re-fetch from the fake, `PaymentService.apply`
with its ledger posting), then distinct events for the same payments through the minimal route (HMAC check, one
insert, one update of that payment; deliveries arriving together commit together, as the real route's do). Prints events/s for both, their ratio, the CPU per event of every role on the
machine and the ceiling that puts on each route (the cores over that CPU), `payql ledger check`'s verdict, and one
JSON object as the last line.

`--stages` also sends each chunk through the real route cut short after each of its stages (bench/webhook_stages.py:
verification, the look-up, the re-fetch, an apply reduced to the minimal route's writes), each with events of its own,
and prints each stage's rate against the minimal route and its CPU per event: where the real route's time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import webhook_stages
from pgdb import ensure_database
from run import (
    SECRET,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    StripeFakeProcess,
    free_port,
    post_all,
    seed_webhook_payments,
    signed,
    start_server,
)
from sqlalchemy import create_engine, text

from payql.db import normalise_url
from payql.migrate import upgrade

HERE = Path(__file__).resolve().parent


def reset(url: str) -> None:
    ensure_database(url)
    engine = create_engine(normalise_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)


def renamed(deliveries: list[tuple[bytes, dict[str, str]]], route: str) -> list[tuple[bytes, dict[str, str]]]:
    """For each delivery, a distinct event (its own id, `evt_<route>_…`) naming the same PaymentIntent: the minimal
    route's update then touches one payment per event, as the real route does, not one row for all; and a stage of
    the real route finds the event new, so it goes as far as a new delivery does."""
    out = []
    for body, _ in deliveries:
        event = json.loads(body)
        out.append(signed({**event, "id": event["id"].replace("evt_hook_", f"evt_{route}_")}))
    return out


def serve(env: dict[str, str], workers: int, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """`payql serve`'s uvicorn (factory, `--workers`, no proxy headers), on the bench app."""
    return start_server(env, HERE, port, workers)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the uvicorn workers), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def postgres_cpu_seconds() -> float:
    """User + system CPU of every PostgreSQL process on this machine (its backends, WAL writer, checkpointer), with
    that of the backends which have ended (the postmaster's reaped children: a connection the pool closed)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if name == "postgres":
            fields = rest.split()
            total += sum(int(field) for field in fields[11:15]) / tick
    return total


class Roles:
    """CPU seconds by role while a route's chunks run: the app's workers, PostgreSQL, the Stripe fake, and this
    process (the delivering client). Where the 2 cores go decides what a route can reach here."""

    def __init__(self, server: int, fake: int) -> None:
        self._server, self._fake = server, fake
        self.totals = {"app": 0.0, "postgres": 0.0, "fake": 0.0, "client": 0.0}

    def now(self) -> dict[str, float]:
        return {
            "app": cpu_seconds(self._server),
            "postgres": postgres_cpu_seconds(),
            "fake": cpu_seconds(self._fake),
            "client": time.process_time(),
        }

    def add(self, before: dict[str, float], after: dict[str, float]) -> None:
        for role in self.totals:
            self.totals[role] += after[role] - before[role]


class WaitSampler:
    """Samples what PostgreSQL's client backends of this database wait on, every 50 ms, while a chunk runs."""

    def __init__(self, url: str) -> None:
        self._engine = create_engine(normalise_url(url))
        self.samples: dict[str, int] = {}
        self.lock_statements: dict[str, int] = {}  # what the backends waiting on a lock were running
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        query = text(
            "SELECT coalesce(wait_event_type || '/' || wait_event, 'running'),"
            " CASE WHEN wait_event_type = 'Lock' THEN left(regexp_replace(query, '\\s+', ' ', 'g'), 70) END"
            " FROM pg_stat_activity"
            " WHERE datname = current_database() AND backend_type = 'client backend'"
            " AND state = 'active' AND pid <> pg_backend_pid()"
        )
        with self._engine.connect() as connection:
            while not self._stop.wait(0.05):
                for what, statement in connection.execute(query):
                    self.samples[what] = self.samples.get(what, 0) + 1
                    if statement:
                        self.lock_statements[statement] = self.lock_statements.get(statement, 0) + 1
                connection.rollback()

    def share(self, prefix: str) -> float:
        total = sum(self.samples.values())
        return sum(n for what, n in self.samples.items() if what.startswith(prefix)) / total if total else 0.0

    def close(self) -> None:
        self._engine.dispose()


def ledger_check(env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "payql.cli", "ledger", "check"], env=env, capture_output=True, text=True, check=False
    )
    verdict = [line for line in done.stdout.splitlines() if line.startswith("ledger check")]
    return done.returncode, (verdict or [done.stderr.strip()[-200:]])[-1]


def counts(url: str) -> dict[str, int]:
    engine = create_engine(normalise_url(url))
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM webhook_events WHERE status = 'PROCESSED' AND dedupe_key LIKE 'evt_hook_%'),"
                " (SELECT count(*) FROM ledger_transactions WHERE kind = 'escrow'),"
                " (SELECT count(*) FROM payments WHERE status = 'SUCCEEDED'),"
                # the transactions that wrote them (rows of one transaction share its xmin): deliveries per commit
                " (SELECT count(DISTINCT xmin::text) FROM webhook_events WHERE dedupe_key LIKE 'evt_hook_%'),"
                " (SELECT count(*) FROM webhook_events WHERE dedupe_key LIKE 'evt_minimal_%'),"
                " (SELECT count(DISTINCT xmin::text) FROM webhook_events WHERE dedupe_key LIKE 'evt_minimal_%')"
            )
        ).one()
    engine.dispose()
    return {
        "processed": row[0],
        "escrow_postings": row[1],
        "succeeded": row[2],
        "commits": row[3],
        "minimal_recorded": row[4],
        "minimal_commits": row[5],
    }


def stage_rows(url: str, stages: tuple[str, ...]) -> dict[str, int]:
    """The webhook log rows each stage wrote: only `bare-apply` writes any (one per delivery it was sent)."""
    if not stages:
        return {}
    engine = create_engine(normalise_url(url))
    with engine.connect() as connection:
        found = {
            f"{stage}_recorded": connection.execute(
                text("SELECT count(*) FROM webhook_events WHERE dedupe_key LIKE :prefix"),
                {"prefix": f"evt\\_{stage}\\_%"},
            ).scalar_one()
            for stage in stages
        }
    engine.dispose()
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000, help="deliveries through each route")
    parser.add_argument("--chunks", type=int, default=4, help="interleaved chunks per route")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also send each chunk through the real route cut short at each stage (bench/webhook_stages.py)",
    )
    args = parser.parse_args()
    stages = webhook_stages.STAGES if args.stages else ()
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url or not url.startswith("postgresql"):
        raise SystemExit("set BENCH_DATABASE_URL to a PostgreSQL database (it is wiped)")

    started = time.perf_counter()
    reset(url)
    fake = StripeFakeProcess()
    warm = 64
    hooks = seed_webhook_payments(url, fake, args.events + warm)
    # each route's deliveries, in the order each chunk sends them: the real route first, so that the stages and the
    # minimal route find the payments it applied (they change nothing the ledger holds)
    routes = {"real": hooks, **{stage: renamed(hooks, stage) for stage in stages}, "minimal": renamed(hooks, "minimal")}
    print(f"seeded {len(hooks)} paid intents in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT": "100000000/minute",
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(HERE)])),
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": fake.url,
    }
    try:
        server, base = serve(env, args.workers, free_port())
    except BaseException:  # the server did not start: the fake is not left running
        fake.close()
        raise
    urls = {
        "real": f"{base}/webhooks/stripe",
        **{stage: f"{base}{webhook_stages.path(stage)}" for stage in stages},
        "minimal": f"{base}/raw/webhook",
    }
    sampler = WaitSampler(url)
    try:
        for route, deliveries in routes.items():  # warm up the workers' pools and caches
            post_all(urls[route], deliveries[:warm], args.connections)
        size = args.events // args.chunks
        eps: dict[str, list[float]] = {route: [] for route in routes}
        roles = {route: Roles(server.pid, fake.process.pid) for route in routes}
        for chunk in range(args.chunks):
            part = slice(warm + chunk * size, warm + (chunk + 1) * size)
            for route, deliveries in routes.items():
                before = roles[route].now()
                if route == "real":
                    with sampler:
                        eps[route].append(post_all(urls[route], deliveries[part], args.connections))
                else:
                    eps[route].append(post_all(urls[route], deliveries[part], args.connections))
                roles[route].add(before, roles[route].now())
    finally:
        sampler.close()
        server.terminate()
        server.wait(timeout=20)
        fake.close()
    check_rc, check_out = ledger_check(env)
    events = size * args.chunks
    report(
        args,
        eps,
        {
            route: {role: 1000 * seconds / events for role, seconds in one.totals.items()}
            for route, one in roles.items()
        },
        sampler,
        (check_rc, check_out),
        {**counts(url), **stage_rows(url, stages)},
    )
    return 0 if check_rc == 0 else 1


def report(
    args: argparse.Namespace,
    rates: dict[str, list[float]],
    cpu_ms: dict[str, dict[str, float]],
    sampler: WaitSampler,
    check: tuple[int, str],
    seen: dict[str, int],
) -> None:
    real_eps, minimal_eps = rates["real"], rates["minimal"]
    real_ms, minimal_ms = cpu_ms["real"]["app"], cpu_ms["minimal"]["app"]
    check_rc, check_out = check
    real, least = statistics.median(real_eps), statistics.median(minimal_eps)
    print(f"chunks: real {[round(x) for x in real_eps]}, minimal {[round(x) for x in minimal_eps]} events/s")
    print(f"webhooks on PostgreSQL, {args.workers} workers, {args.connections} concurrent deliveries:")
    print(f"  /webhooks/stripe {real:.0f} events/s, minimal route {least:.0f} events/s, ratio {real / least:.2f}")
    print(f"  app CPU per event (both workers): real {real_ms:.1f} ms, minimal {minimal_ms:.1f} ms")
    for route, roles in cpu_ms.items():
        shares = ", ".join(f"{role} {ms:.1f}" for role, ms in roles.items())
        print(f"  CPU ms per event through the {route} route: {shares} (all: {sum(roles.values()):.1f})")
    # What this machine could carry at most if every core went to a route's work: its cores over the CPU one event
    # costs on the machine (the app, PostgreSQL, the fake's re-fetch answers, the client).
    cores = os.cpu_count() or 1
    ceiling = {route: cores * 1000 / sum(roles.values()) for route, roles in cpu_ms.items()}
    print(
        f"  this machine's ceiling ({cores} cores): real {ceiling['real']:.0f} events/s, minimal {ceiling['minimal']:.0f}"
    )
    # The fake's CPU per re-fetch as a yardstick: its code does not change between two checkouts, and it drifts with
    # the machine's speed (which moves by tens of percent from run to run here) as the app's and PostgreSQL's do.
    fake_ms = cpu_ms["real"].get("fake", 0.0)
    yardstick = {
        role: round(cpu_ms["real"][role] / fake_ms, 2)
        for role in ("app", "postgres")
        if fake_ms and role in cpu_ms["real"]
    }
    if yardstick:
        print(
            f"  the real route's CPU per event in re-fetches answered by the fake: app {yardstick.get('app')},"
            f" postgres {yardstick.get('postgres')}"
        )
    stages = [route for route in rates if route not in {"real", "minimal"}]
    if stages:
        print("  the real route cut short (bench/webhook_stages.py), each stage's deliveries new to it:")
        print("    route: events/s (median), vs the minimal route, CPU ms per event (app, postgres, fake)")
        for route in [*stages, "real", "minimal"]:
            median = statistics.median(rates[route])
            shares = ", ".join(f"{cpu_ms[route].get(role, 0.0):.2f}" for role in ("app", "postgres", "fake"))
            print(f"    {route:>10}: {median:6.0f}, {median / least:4.2f}, {shares}")
    waits = ", ".join(f"{what} {n}" for what, n in sorted(sampler.samples.items(), key=lambda item: -item[1])[:6])
    print(f"  active backends during the real route: {100 * sampler.share('Lock/'):.0f}% waiting on a lock ({waits})")
    for statement, n in sorted(sampler.lock_statements.items(), key=lambda item: -item[1])[:4]:
        print(f"    waiting on a lock {n}x: {statement}")
    print(f"  payql ledger check: {'ok' if check_rc == 0 else 'FAILED'} ({check_out})")
    print(f"  {seen}")
    if seen["commits"] and seen["minimal_commits"]:
        print(
            "  deliveries per commit (webhook_events rows per writing transaction):"
            f" real {seen['processed'] / seen['commits']:.1f},"
            f" minimal {seen['minimal_recorded'] / seen['minimal_commits']:.1f}"
        )
    summary: dict[str, Any] = {
        "webhook_pg_eps": round(real, 1),
        "minimal_pg_eps": round(least, 1),
        "webhook_pg_vs_minimal": round(real / least, 3),
        "app_cpu_ms_per_event": round(real_ms, 2),
        "minimal_cpu_ms_per_event": round(minimal_ms, 2),
        "ceiling_eps": {route: round(eps, 1) for route, eps in ceiling.items()},
        "cpu_ms_per_event": {
            route: {role: round(ms, 2) for role, ms in roles.items()} for route, roles in cpu_ms.items()
        },
        "cpu_in_fake_refetches": yardstick,
        "stages_vs_minimal": {route: round(statistics.median(rates[route]) / least, 3) for route in stages},
        "lock_wait_share": round(sampler.share("Lock/"), 3),
        "workers": args.workers,
        "connections": args.connections,
        "ledger_check_ok": check_rc == 0,
        **seen,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())

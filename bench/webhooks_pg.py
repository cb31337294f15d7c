"""Webhook ingestion on PostgreSQL: `make bench-webhooks` (needs BENCH_DATABASE_URL; the database is wiped).

Migrates a fresh schema, seeds PaymentIntents paid at the Stripe fake (its own process) with their payments in
payql (enroll payments, automatic capture: each `payment_intent.succeeded` posts the escrow capture, which moves the
platform-wide `provider_cash` and `escrow` accounts: the rows every capture used to queue on), then serves the bench
app (payql's `create_app` as `payql serve` builds it, plus the minimal `POST /raw/webhook` of `bench_app.py`) with
`uvicorn --workers 2` and sends every signed delivery once, `--connections` at a time, in interleaved chunks:
a chunk through `/webhooks/stripe` (verification, the webhook log, the re-fetch from the fake, `PaymentService.apply`
with its ledger posting), then distinct events for the same payments through the minimal route (HMAC check, one
insert, one update of that payment). Prints events/s for both, their ratio, `payql ledger check`'s verdict, and
one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from run import (
    SECRET,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    StripeFakeProcess,
    free_port,
    post_all,
    seed_webhook_payments,
    signed,
)
from sqlalchemy import create_engine, text

from payql.db import normalise_url
from payql.migrate import upgrade

HERE = Path(__file__).resolve().parent


def reset(url: str) -> None:
    engine = create_engine(normalise_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)


def minimal_for(deliveries: list[tuple[bytes, dict[str, str]]]) -> list[tuple[bytes, dict[str, str]]]:
    """For each delivery, a distinct event (its own id) naming the same PaymentIntent: the minimal route's update
    then touches one payment per event, as the real route does, not one row for all."""
    out = []
    for body, _ in deliveries:
        event = json.loads(body)
        out.append(signed({**event, "id": event["id"].replace("evt_hook_", "evt_minimal_")}))
    return out


def serve(env: dict[str, str], workers: int, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """`payql serve`'s uvicorn (factory, `--workers`, no proxy headers), on the bench app."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench_app:create_with_webhooks",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-proxy-headers",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=HERE,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).read()  # noqa: S310 - loopback
            break
        except OSError:
            time.sleep(0.1)
    else:
        server.terminate()
        raise SystemExit("the server did not start")
    time.sleep(1)  # the second worker
    return server, base


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
                " (SELECT count(*) FROM payments WHERE status = 'SUCCEEDED')"
            )
        ).one()
    engine.dispose()
    return {"processed": row[0], "escrow_postings": row[1], "succeeded": row[2]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000, help="deliveries through each route")
    parser.add_argument("--chunks", type=int, default=4, help="interleaved chunks per route")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url or not url.startswith("postgresql"):
        raise SystemExit("set BENCH_DATABASE_URL to a PostgreSQL database (it is wiped)")

    started = time.perf_counter()
    reset(url)
    fake = StripeFakeProcess()
    warm = 64
    hooks = seed_webhook_payments(url, fake, args.events + warm)
    minimal = minimal_for(hooks)
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
    server, base = serve(env, args.workers, free_port())
    real_url, minimal_url = f"{base}/webhooks/stripe", f"{base}/raw/webhook"
    try:
        post_all(real_url, hooks[:warm], args.connections)  # warm up both workers' pools and caches
        post_all(minimal_url, minimal[:warm], args.connections)
        size = args.events // args.chunks
        real_eps: list[float] = []
        minimal_eps: list[float] = []
        for chunk in range(args.chunks):
            part = slice(warm + chunk * size, warm + (chunk + 1) * size)
            real_eps.append(post_all(real_url, hooks[part], args.connections))
            minimal_eps.append(post_all(minimal_url, minimal[part], args.connections))
    finally:
        server.terminate()
        server.wait(timeout=20)
        fake.close()
    check_rc, check_out = ledger_check(env)
    seen = counts(url)

    real, least = statistics.median(real_eps), statistics.median(minimal_eps)
    print(f"chunks of {size}: real {[round(x) for x in real_eps]}, minimal {[round(x) for x in minimal_eps]}")
    print(f"webhooks on PostgreSQL, {args.workers} workers, {args.connections} concurrent deliveries:")
    print(f"  /webhooks/stripe {real:.0f} events/s, minimal route {least:.0f} events/s, ratio {real / least:.2f}")
    print(f"  payql ledger check: {'ok' if check_rc == 0 else 'FAILED'} ({check_out})")
    print(f"  {seen}")
    summary: dict[str, Any] = {
        "webhook_pg_eps": round(real, 1),
        "minimal_pg_eps": round(least, 1),
        "webhook_pg_vs_minimal": round(real / least, 3),
        "workers": args.workers,
        "connections": args.connections,
        "ledger_check_ok": check_rc == 0,
        **seen,
    }
    print(json.dumps(summary))
    return 0 if check_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

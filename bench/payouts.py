"""The weekly payout run at scale: `make bench-payouts`.

Seeds a fresh database (SQLite in a temporary directory; `BENCH_DATABASE_URL` for PostgreSQL, whose tables are
emptied first, the database made if it does not exist) with N providers, each with a verified Stripe Connect account
and an available balance above the minimum (one balanced ledger posting). Serves the Stripe fake
(`tests/fakes/stripe_api.py`, `latency_ms` added to every request) from this process, and times the real command,
`payql payouts run --auto-approve --concurrency C`, in a subprocess of its own: each provider gets one approved
withdrawal and one keyed transfer. Then checks that every withdrawal is COMPLETED with a transfer of its own, that
the fake received exactly one transfer request per withdrawal (one idempotency key each, none sent twice), and that
`payql ledger check` passes.

Concurrency 1 (one after another) runs on a smaller sample (`--sample`) and is extrapolated to N, labelled so. Prints
a table and, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pgdb import ensure_database
from sqlalchemy import func, insert, select, text

from payql.batches import DEFAULT_CONCURRENCY
from payql.db import Database
from payql.migrate import upgrade
from payql.models import PayoutAccount, User, Withdrawal, utcnow
from payql.models.enums import PayoutAccountStatus, ProviderName, WithdrawalStatus
from payql.services import ledger
from payql.services.postings import Line

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from fakes.stripe_api import FakeStripe  # noqa: E402 - the test fake, served from this process

STRIPE_KEY = "sk_test_bench_payouts"
BALANCE_MINOR = 12_345  # 123.45 USD each, above the 50.00 minimum


def fresh_database(url: str | None, workdir: Path, name: str) -> str:
    if url is None:
        url = f"sqlite:///{workdir / name}.db"
    else:
        ensure_database(url)
        db = Database(url)
        with db.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        db.dispose()
    upgrade(url)
    return url


def seed(url: str, providers: int) -> None:
    """`providers` providers with a verified Stripe account and `BALANCE_MINOR` available: one balanced posting
    (Stripe's cash on one side, every payable on the other)."""
    db = Database(url)
    now = utcnow()
    users = [f"bench-provider-{i:06d}" for i in range(providers)]
    with db.uow() as uow:
        connection = uow.session.connection()
        connection.execute(insert(User), [{"id": user, "roles": "provider"} for user in users])
        connection.execute(
            insert(PayoutAccount),
            [
                {
                    "id": f"pac_bench{i:06d}",
                    "user_id": user,
                    "provider": ProviderName.STRIPE,
                    "external_account_id": f"acct_bench{i:06d}",
                    "currency": "USD",
                    "status": PayoutAccountStatus.VERIFIED,
                    "verified_at": now,
                }
                for i, user in enumerate(users)
            ],
        )
        lines = [Line(ProviderName.STRIPE.value, ledger.AccountKind.PROVIDER_CASH, "USD", BALANCE_MINOR * providers)]
        lines += [Line(user, ledger.AccountKind.PAYABLE, "USD", -BALANCE_MINOR) for user in users]
        ledger.post(uow.session, "bench_seed", "bench", "payouts", lines)
        uow.commit()
    db.dispose()


def command_env(url: str, **more: str) -> dict[str, str]:
    """The environment of a `payql` command on the bench's database."""
    return {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET": "bench-payouts-jwt-secret-0123456789abcdef",
        "LOG_LEVEL": "WARNING",
        **more,
    }


def run_payouts(url: str, fake: FakeStripe, concurrency: int, workdir: Path) -> tuple[float, float, str]:
    """The command's wall-clock seconds, its CPU seconds (user + system) and what it printed."""
    env = command_env(url, STRIPE_SECRET_KEY=STRIPE_KEY, STRIPE_API_BASE=fake.url)
    payql = Path(sys.executable).with_name("payql")
    command = [str(payql), "payouts", "run", "--auto-approve", "--concurrency", str(concurrency)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"payql payouts run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, cpu, done.stdout.strip()


def check(url: str, fake: FakeStripe, providers: int, workdir: Path) -> None:
    """Every provider paid once: N withdrawals COMPLETED with N distinct transfers, N transfers at the fake, and
    the ledger consistent."""
    db = Database(url)
    with db.read() as session:
        completed, transfers = session.execute(
            select(func.count(), func.count(Withdrawal.provider_payout_id.distinct())).where(
                Withdrawal.status == WithdrawalStatus.COMPLETED
            )
        ).one()
        total = session.scalar(select(func.count()).select_from(Withdrawal))
    db.dispose()
    sent = [r.idempotency_key for r in fake.requests if (r.method, r.path) == ("POST", "/v1/transfers")]
    made = len(fake.transfers)
    if not completed == transfers == total == made == len(sent) == len(set(sent)) == providers:
        raise SystemExit(
            f"expected {providers} payouts: {completed} completed, {transfers} distinct transfers, "
            f"{total} withdrawals, {made} transfers at the fake from {len(sent)} requests with "
            f"{len(set(sent))} keys"
        )
    payql = Path(sys.executable).with_name("payql")
    env = command_env(url)
    ledger_check = subprocess.run(
        [str(payql), "ledger", "check"], env=env, cwd=workdir, capture_output=True, text=True, check=False
    )
    if ledger_check.returncode != 0:
        raise SystemExit(f"payql ledger check failed:\n{ledger_check.stdout}\n{ledger_check.stderr}")


def measure(url: str | None, providers: int, concurrency: int, latency_ms: int, workdir: Path) -> dict[str, float]:
    database = fresh_database(url, workdir, f"payouts-{concurrency}")
    seed(database, providers)
    with FakeStripe(secret_key=STRIPE_KEY, latency_ms=latency_ms) as fake:
        seconds, cpu, printed = run_payouts(database, fake, concurrency, workdir)
        check(database, fake, providers, workdir)
    print(
        f"  concurrency {concurrency:>2}, {providers} providers: {seconds:.1f} s, {cpu:.1f} s CPU ({printed})",
        flush=True,
    )
    return {
        "providers": providers,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 1),
        "payouts_per_s": round(providers / seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=500, help="providers paid at concurrency 1 (extrapolated)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL") or None
    backend = "PostgreSQL" if url else "SQLite"
    print(f"payout run, {backend}, Stripe fake with {args.latency_ms} ms per request", flush=True)
    with tempfile.TemporaryDirectory(prefix="payql-bench-payouts-") as tmp:
        workdir = Path(tmp)
        one = measure(url, args.sample, 1, args.latency_ms, workdir)
        many = measure(url, args.providers, args.concurrency, args.latency_ms, workdir)
    extrapolated = one["seconds"] * args.providers / args.sample
    print()
    print("| concurrency | providers | time s | CPU s | payouts/s |")
    print("|---|---|---|---|---|")
    print(f"| 1 | {args.sample} | {one['seconds']:.1f} | {one['cpu_seconds']:.1f} | {one['payouts_per_s']:.1f} |")
    print(
        f"| 1 (extrapolated from {args.sample}) | {args.providers} | {extrapolated:.0f} | | {one['payouts_per_s']:.1f} |"
    )
    print(
        f"| {args.concurrency} | {args.providers} | {many['seconds']:.1f} | {many['cpu_seconds']:.1f} "
        f"| {many['payouts_per_s']:.1f} |"
    )
    print(
        json.dumps(
            {
                "backend": backend,
                "latency_ms": args.latency_ms,
                "payouts": args.providers,
                "concurrency": args.concurrency,
                "payouts_seconds": many["seconds"],
                "payouts_per_s": many["payouts_per_s"],
                "payouts_cpu_seconds": many["cpu_seconds"],
                "sequential_sample": args.sample,
                "sequential_per_s": one["payouts_per_s"],
                "sequential_seconds_extrapolated": round(extrapolated, 1),
                "speedup": round(many["payouts_per_s"] / one["payouts_per_s"], 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

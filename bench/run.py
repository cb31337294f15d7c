"""payql's benchmark: `make bench`.

Seeds a database (10k payments across 100 users, with enrolls and refunds), serves it with one uvicorn worker on
loopback, and loads it with wrk (32 connections): (a) GraphQL `payments(first: 20)` with nested `enroll` and
`refunds`; (b) the same page from a minimal Starlette + SQLAlchemy Core JSON route, the stack's limit; (c)
`balances`; (d) SQL statements per page for page sizes 10 and 100, counted in process. Prints a table, then one
JSON line as the last line.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

from payql.auth import issue_token
from payql.db import Database
from payql.migrate import upgrade
from payql.models import Enroll, Payment, Refund, User, counts
from payql.models.enums import (
    CaptureMethod,
    EnrollStatus,
    PaymentPurpose,
    PaymentStatus,
    ProviderName,
    RefundReason,
    RefundStatus,
)
from payql.services.catalogue import Catalogue
from payql.settings import Settings

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
USERS = 100
PAYMENTS = 10_000
LIST_QUERY = (
    "query { payments(first: 20) { totalCount pageInfo { hasNextPage endCursor } edges { node { id status "
    "amount { amount currency } enroll { id title status } refunds { id amount { amount } status } } } } }"
)
BALANCES_QUERY = "query { balances { credits accounts { currency available { amount } pending { amount } } } }"


def seed(url: str, rng: random.Random) -> None:
    """Bulk rows (not through the services: 10k payments would take minutes of fsyncs). Read-only bench data."""
    upgrade(url)
    db = Database(url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    users = [{"id": f"user-{i:03d}", "roles": "provider" if i % 2 else ""} for i in range(USERS)]
    enrolls: list[dict[str, Any]] = []
    payments: list[dict[str, Any]] = []
    refunds: list[dict[str, Any]] = []
    for i in range(PAYMENTS):
        created = start + timedelta(seconds=i * 37)
        stamp = f"{int(created.timestamp() * 1_000_000):014x}"
        payer = users[rng.randrange(0, USERS, 2)]["id"]
        payee = users[rng.randrange(1, USERS, 2)]["id"]
        amount = rng.randrange(1_000, 100_000)
        payment: dict[str, Any] = {
            "id": f"pay_{stamp}{i:010x}",
            "purpose": PaymentPurpose.ENROLL,
            "provider": ProviderName.STRIPE,
            "mock": True,
            "capture_method": CaptureMethod.AUTOMATIC,
            "status": PaymentStatus.SUCCEEDED,
            "currency": "USD",
            "amount_minor": amount,
            "captured_minor": amount,
            "refunded_minor": 0,
            "platform_bps": 500,
            "tax_bps": 0,
            "payer_id": payer,
            "payee_id": payee,
            "provider_payment_id": f"pi_bench_{i}",
            "provider_key": f"bench-{i}",
            "created_at": created,
            "updated_at": created,
            "paid_at": created,
            "escrow_minor": 0,
            "split_refunded_minor": 0,
        }
        if i % 3:
            enroll_id = f"enr_{stamp}{i:010x}"
            enrolls.append(
                {
                    "id": enroll_id,
                    "client_id": payer,
                    "provider_id": payee,
                    "title": f"Lesson {i}",
                    "price_minor": amount,
                    "currency": "USD",
                    "status": EnrollStatus.COMPLETED,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            payment["enroll_id"] = enroll_id
        else:
            payment.update(purpose=PaymentPurpose.PACKAGE, package_code="standard", payee_id=None, credits=1100)
        if i % 5 == 0:
            part = amount // 4
            for n in range(1 + i % 2):
                refunds.append(
                    {
                        "id": f"ref_{stamp}{i:08x}{n:02x}",
                        "payment_id": payment["id"],
                        "provider": ProviderName.STRIPE,
                        "amount_minor": part,
                        "currency": "USD",
                        "status": RefundStatus.SUCCEEDED,
                        "reason": RefundReason.REQUESTED_BY_CUSTOMER,
                        "provider_refund_id": f"re_bench_{i}_{n}",
                        "provider_key": f"bench-refund-{i}-{n}",
                        "created_at": created,
                        "updated_at": created,
                    }
                )
                payment["refunded_minor"] += part
            payment["status"] = PaymentStatus.PARTIALLY_REFUNDED
        payments.append(payment)
    now = datetime.now(UTC)
    Catalogue(Settings(_env_file=None).credit_packages).sync(db)  # type: ignore[call-arg]
    with db.uow() as uow:
        session = uow.session
        session.execute(insert(User), [{**user, "created_at": now, "updated_at": now} for user in users])
        session.execute(insert(Enroll), enrolls)
        session.execute(insert(Payment), payments)
        session.execute(insert(Refund), refunds)
        counts.rebuild(session.connection())  # bulk inserts skip the ORM flush that keeps the counters
        uow.commit()
    analyze(db)
    db.dispose()


def analyze(db: Database) -> None:
    """On PostgreSQL, gather the planner's statistics after a bulk load, as autovacuum does within a minute of one
    in production. This machine's server runs with `autovacuum = off`: without statistics the planner guessed 3
    rows for a user's payments, sorted all 211 of them for a page of 20 and read `refunds` sequentially, and
    PostgreSQL spent 3.1 ms of CPU per list request in `make bench-replicas` against 0.6 with them (bench/README.md,
    "Fifth session of 2026-12-06"). SQLite keeps no statistics unless told to, in production as here: left alone."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")


WEBHOOK_SECRET = "whsec_bench_secret"
STRIPE_KEY = "sk_test_bench"
WEBHOOKS = 2000


class StripeFakeProcess:
    """The test fake of the Stripe API, in a process of its own (so it does not share a GIL with the load)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = HERE.parent / "tests" / "fakes" / "stripe_api.py"
        self.process = subprocess.Popen(
            [sys.executable, str(script), "--port", str(self.port), "--secret-key", STRIPE_KEY],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{self.url}/checkout/none", timeout=1)  # noqa: S310 - loopback
            except urllib.error.HTTPError:
                return  # it answers (404: no such session)
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the fake Stripe API did not start")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def signed(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A delivery signed as Stripe signs: `t=<ts>,v1=<HMAC-SHA256 of "<ts>.<body>">`."""
    body = json.dumps(event).encode()
    stamp = int(time.time())
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={stamp},v1={digest}", "Content-Type": "application/json"}


def seed_webhook_payments(url: str, fake: StripeFakeProcess, count: int) -> list[tuple[bytes, dict[str, str]]]:
    """`count` enroll payments that Stripe has taken (PaymentIntents paid at the fake) and we have not heard of
    yet; returns their signed `payment_intent.succeeded` deliveries."""
    import httpx  # noqa: PLC0415

    db = Database(url)
    now = datetime.now(UTC)
    enrolls, payments, deliveries = [], [], []
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {STRIPE_KEY}"}) as client:
        for i in range(count):
            stamp = f"{int(now.timestamp() * 1_000_000) + i:014x}{i:010x}"
            payment_id, enroll_id = f"pay_{stamp}", f"enr_{stamp}"
            created = client.post(
                "/v1/payment_intents",
                data={
                    "amount": "5000",
                    "currency": "usd",
                    "capture_method": "automatic",
                    "allowed_payment_method_types[0]": "card",
                    "metadata[payment_id]": payment_id,
                },
            ).json()
            intent = client.post(
                f"/v1/payment_intents/{created['id']}/confirm", data={"payment_method": "pm_card_visa"}
            ).json()
            enrolls.append(
                {
                    "id": enroll_id,
                    "client_id": "hook-client",
                    "provider_id": "hook-provider",
                    "title": "Hook",
                    "price_minor": 5000,
                    "currency": "USD",
                    "status": EnrollStatus.PENDING,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            payments.append(
                {
                    "id": payment_id,
                    "purpose": PaymentPurpose.ENROLL,
                    "provider": ProviderName.STRIPE,
                    "mock": False,
                    "capture_method": CaptureMethod.AUTOMATIC,
                    "status": PaymentStatus.PENDING,
                    "currency": "USD",
                    "amount_minor": 5000,
                    "captured_minor": 0,
                    "refunded_minor": 0,
                    "authorized_minor": 0,
                    "platform_bps": 500,
                    "tax_bps": 0,
                    "payer_id": "hook-client",
                    "payee_id": "hook-provider",
                    "enroll_id": enroll_id,
                    "provider_payment_id": intent["id"],
                    "provider_key": f"hook-{i}",
                    "created_at": now,
                    "updated_at": now,
                    "escrow_minor": 0,
                    "split_refunded_minor": 0,
                }
            )
            event = {
                "id": f"evt_hook_{i}",
                "object": "event",
                "type": "payment_intent.succeeded",
                "api_version": "2026-10-28.endive",
                "created": int(now.timestamp()),
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "data": {"object": intent},
            }
            deliveries.append(signed(event))
    users = [
        {"id": name, "roles": role, "created_at": now, "updated_at": now}
        for name, role in (("hook-client", ""), ("hook-provider", "provider"))
    ]
    with db.uow() as uow:
        uow.session.execute(insert(User), users)
        uow.session.execute(insert(Enroll), enrolls)
        uow.session.execute(insert(Payment), payments)
        counts.rebuild(uow.session.connection())  # bulk inserts skip the ORM flush that keeps the counters
        uow.commit()
    analyze(db)
    db.dispose()
    return deliveries


def minimal_deliveries(template: tuple[bytes, dict[str, str]], count: int) -> list[tuple[bytes, dict[str, str]]]:
    """Distinct signed events for the minimal route (its dedupe insert needs distinct event ids)."""
    event = json.loads(template[0])
    return [signed({**event, "id": f"evt_minimal_{i}"}) for i in range(count)]


def post_all(url: str, deliveries: list[tuple[bytes, dict[str, str]]], connections: int) -> float:
    """Send every delivery once, over `connections` keep-alive HTTP/1.1 connections opened beforehand; returns
    deliveries per second (all must answer 200).

    The requests are encoded before the clock starts and the answers are read by their `Content-Length`, so the
    client spends a few hundredths of a millisecond of CPU on each. httpx's `AsyncClient`, used here before, spent
    about 3 ms: as much as the minimal route's server, on the same 2 cores, which capped the baseline below the
    stack's limit (bench/README.md, "Fifth session of 2026-12-06"). wrk cannot send a fixed list of distinct requests exactly once."""
    import asyncio  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415

    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    encoded = [_request(parts.path, host, port, body, headers) for body, headers in deliveries]

    async def run() -> float:
        queue = list(reversed(encoded))
        failures: list[int] = []
        streams = [await asyncio.open_connection(host, port) for _ in range(min(connections, len(queue)))]

        async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while queue:
                writer.write(queue.pop())
                status, close = await _answer(reader)
                if status != 200:
                    failures.append(status)
                if close:  # the server ended the connection: open another
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
            writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(worker(reader, writer) for reader, writer in streams))
        elapsed = time.perf_counter() - started
        if failures:
            raise SystemExit(f"webhook deliveries failed: {failures[:5]}")
        return len(encoded) / elapsed

    return asyncio.run(run())


def _request(path: str, host: str, port: int, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _answer(reader: Any) -> tuple[int, bool]:
    """The status of one answer and whether the server closes the connection after it; its body is read and
    dropped. A chunked answer is refused: the bench's routes answer with a length."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = int(head[9:12])
    fields = dict(line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
    if "content-length" not in fields:
        raise SystemExit(f"an answer without Content-Length: {head!r}")
    await reader.readexactly(int(fields["content-length"]))
    return status, fields.get("connection", "").strip() == "close"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wrk(url: str, body: dict[str, Any] | None, token: str, seconds: int, connections: int) -> dict[str, float]:
    script = HERE / "out" / "post.lua"
    script.parent.mkdir(exist_ok=True)
    headers = f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    if body is not None:
        payload = json.dumps(body).replace("\\", "\\\\").replace('"', '\\"')
        script.write_text(
            f'wrk.method = "POST"\nwrk.body = "{payload}"\nwrk.headers["Content-Type"] = "application/json"\n{headers}'
        )
    else:
        script.write_text(headers)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def percentile(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rps, "p50_ms": percentile("50"), "p99_ms": percentile("99")}


def statements_per_page(url: str, token_user: str, size: int) -> int:
    """SQL statements one `payments(first: size)` page costs, counted with an engine event listener."""
    from payql.app import create_app, services_of  # noqa: PLC0415
    from payql.auth import Principal  # noqa: PLC0415
    from payql.schema import build_schema  # noqa: PLC0415
    from payql.schema.context import Context  # noqa: PLC0415

    # A page of 100 with nested lists is over the per-request cost ceiling by design; the statement count is what
    # is measured here, so the ceiling is lifted for this in-process run only.
    settings = Settings(_env_file=None, database_url=url, jwt_secret=SECRET, graphql_max_cost=10**6)  # type: ignore[call-arg]
    app = create_app(settings)
    services = services_of(app)
    schema = build_schema(settings)
    principal = Principal(token_user, frozenset())
    query = LIST_QUERY.replace("first: 20", f"first: {size}")
    services.users.ensure(principal)
    statements: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if not statement.startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            statements.append(statement)

    event.listen(services.db.engine, "before_cursor_execute", count)
    context = Context(services=services, principal=principal, auth_error=None, request_id="bench")
    try:
        result = schema.execute_sync(query, context_value=context)
    finally:
        context.close()
        event.remove(services.db.engine, "before_cursor_execute", count)
        services.db.dispose()
    assert not result.errors, result.errors
    assert len(result.data["payments"]["edges"]) == size  # type: ignore[index]
    return len(statements)


def same_answer(base: str, token: str, user: str) -> None:
    """The minimal route must answer exactly what GraphQL answers (else the ratio compares different work)."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base}/graphql",
        data=json.dumps({"query": LIST_QUERY}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        graphql = json.loads(answer.read())
    with urllib.request.urlopen(f"{base}/raw/payments?user={user}&first=20", timeout=10) as answer:  # noqa: S310
        raw = json.loads(answer.read())
    if graphql != raw:
        raise SystemExit(f"the minimal route answers other data than GraphQL:\n{graphql}\n{raw}")


def start_server(
    env: dict[str, str], workdir: Path, port: int, workers: int = 1
) -> tuple[subprocess.Popen[bytes], str]:
    """The bench app (`bench_app.py`) under uvicorn as `payql serve` runs it (`payql.serving.run`: factory, the
    standard library's event loop, a listening socket per worker), without proxy headers or an access log."""
    launch = (
        "import sys; from payql.serving import run; run('bench_app:create_with_webhooks', host='127.0.0.1',"
        " port=int(sys.argv[1]), workers=int(sys.argv[2]), proxy_headers=False, access_log=False, log_level='warning')"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", launch, str(port), str(workers)],
        env=env,
        cwd=workdir,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):  # up to a minute or more: start-up is slow on a loaded machine
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).read()  # noqa: S310 - loopback
            break
        except OSError:
            time.sleep(0.1)
    else:
        server.terminate()
        raise SystemExit("the server did not start")
    if workers > 1:
        time.sleep(1)  # the other workers
    return server, base


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per scenario (median kept)")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench` installs it (apt-get install wrk)")

    workdir = Path(tempfile.mkdtemp(prefix="payql-bench-"))
    url = f"sqlite:///{workdir / 'bench.db'}"
    started = time.perf_counter()
    seed(url, random.Random(7))
    print(f"seeded {PAYMENTS} payments for {USERS} users in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    user = "user-000"
    settings = Settings(_env_file=None, jwt_secret=SECRET)  # type: ignore[call-arg]
    token = issue_token(settings, user, ttl_seconds=3600)
    sql_10 = statements_per_page(url, user, 10)
    sql_100 = statements_per_page(url, user, 100)

    fake = StripeFakeProcess()
    hooks = seed_webhook_payments(url, fake, WEBHOOKS)
    minimal = minimal_deliveries(hooks[0], WEBHOOKS)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT": "100000000/minute",  # the load is one user: no limit is measured here
        "PYTHONPATH": str(HERE),
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": fake.url,
    }
    server, base = start_server(env, workdir, port)
    try:
        same_answer(base, token, user)
        scenarios = [
            ("graphql_list", f"{base}/graphql", {"query": LIST_QUERY}),
            ("raw_list", f"{base}/raw/payments?user={user}&first=20", None),
            ("balances", f"{base}/graphql", {"query": BALANCES_QUERY}),
        ]
        for _, target, body in scenarios:
            wrk(target, body, token, 2, args.connections)  # warm up caches and connections
        # Rounds interleave the scenarios and each figure is the median over the rounds: this machine's speed
        # drifts by tens of percent over a minute, and a ratio of two runs minutes apart would measure the drift.
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in scenarios}
        for _ in range(args.rounds):
            for name, target, body in scenarios:
                runs[name].append(wrk(target, body, token, args.seconds, args.connections))
        results = {
            name: {key: statistics.median(run[key] for run in measured) for key in measured[0]}
            for name, measured in runs.items()
        }
        # Webhooks: every delivery once, alternating halves between the real route and the minimal one.
        half = len(hooks) // 2
        webhook_eps = [
            post_all(f"{base}/webhooks/stripe", part, args.connections) for part in (hooks[:half], hooks[half:])
        ]
        minimal_eps = [
            post_all(f"{base}/raw/webhook", part, args.connections) for part in (minimal[:half], minimal[half:])
        ]
    finally:
        server.terminate()
        server.wait(timeout=10)
        fake.close()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{'scenario':<16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, row in results.items():
        print(f"{name:<16}{row['rps']:>10.0f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}")
    print(f"SQL statements per page: first 10 -> {sql_10}, first 100 -> {sql_100}")
    webhook_rate, minimal_rate = statistics.mean(webhook_eps), statistics.mean(minimal_eps)
    print(
        f"webhooks: {webhook_rate:.0f} events/s through /webhooks/stripe, {minimal_rate:.0f} through the minimal route"
    )
    graphql = results["graphql_list"]
    summary = {
        "graphql_list_rps": round(graphql["rps"], 1),
        "raw_list_rps": round(results["raw_list"]["rps"], 1),
        "graphql_vs_raw": round(graphql["rps"] / results["raw_list"]["rps"], 3),
        "p99_over_p50": round(graphql["p99_ms"] / graphql["p50_ms"], 2),
        "sql_per_page_10": sql_10,
        "sql_per_page_100": sql_100,
        "balances_rps": round(results["balances"]["rps"], 1),
        "webhook_eps": round(webhook_rate, 1),
        "webhook_vs_minimal": round(webhook_rate / minimal_rate, 3),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

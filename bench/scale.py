"""payql's scale benchmark: `make bench-scale` (PostgreSQL only, at BENCH_DATABASE_URL).

Does a read cost grow with a user's history? For each size (10k, then 1M payments) this recreates a schema, migrates it as `payql migrate` does, seeds it in SQL (generate_series: enroll and package payments
over three years, with statuses, refunds, enrolls, payout accounts, monthly withdrawals and their ledger
postings), and times, through the app's own code:

- GraphQL in process (the schema, context and resolvers `POST /graphql` runs; no HTTP), as a heavy user (payer or
  payee of 10% of the payments): the default `payments` page with `totalCount`, a page 90% deep (`after`), status
  filters, `balances`; and the first page of an old provider, whose payments are all among the oldest;
- `payql reconcile`'s selections (the Reconciler's own statements) and a whole run with nothing due;
- `payql payouts run`'s selection with nothing due (the whole run).

Nothing is due: every intent is finished, no payment waits on its payer within the resync window, no refund moved
within the lookback window, and no withdrawal is approved or in flight. Prints medians (ms) per query and size,
then one JSON line with every median and the ratios 1M / 10k.

Each size lives in its own schema (`scale_10000`, `scale_1000000`) of the database at BENCH_DATABASE_URL, whose name
must contain "bench" (the schemas are dropped and made again; the database itself is made if it does not exist); the
sizes are timed in interleaved rounds, so that the machine's noise falls on each alike. `--reuse` times the schemas
a previous run seeded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pgdb import ensure_database
from sqlalchemy import create_engine, make_url, text

from payql.auth import Principal
from payql.bootstrap import bootstrap
from payql.db import Database, normalise_url
from payql.migrate import upgrade
from payql.schema import build_schema
from payql.schema.context import Context
from payql.services import Services
from payql.services.catalogue import Catalogue
from payql.services.queries import encode_cursor
from payql.settings import Settings

HEAVY = "u_heavy"
OLD = "u_old"
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
LIST = (
    "query($after: String, $status: PaymentStatus) { payments(first: 20, after: $after, status: $status) { "
    "totalCount pageInfo { hasNextPage endCursor } edges { node { id status amount { amount currency } "
    "enroll { id title status } refunds { id amount { amount } status } } } } }"
)
BALANCES = (
    "query { balances { credits accounts { currency available { amount } pending { amount } paidOut { amount } } } }"
)

# One statement per table, each a single pass of generate_series. :n payments, :users users (half providers).
SEED = [
    """
    CREATE TEMP TABLE seed AS
    SELECT i,
        created,
        'pay_' || lpad(to_hex((extract(epoch FROM created) * 1000000)::bigint), 14, '0') || lpad(to_hex(i), 10, '0')
            AS id,
        lpad(to_hex((extract(epoch FROM created) * 1000000)::bigint), 14, '0') || lpad(to_hex(i), 10, '0') AS stamp,
        CASE WHEN i % 20 = 0 THEN 'u_heavy' ELSE 'c' || ((i * 7) % (:users / 2)) END AS payer,
        CASE
            WHEN i <= :n / 200 THEN 'ENROLL'
            WHEN i % 20 = 10 THEN 'ENROLL'
            WHEN i % 10 IN (3, 7, 9) THEN 'PACKAGE'
            ELSE 'ENROLL'
        END AS purpose,
        CASE
            WHEN i <= :n / 200 THEN 'u_old'
            WHEN i % 20 = 10 THEN 'u_heavy'
            ELSE 'p' || ((i * 31) % (:users / 2))
        END AS payee,
        mod(abs(hashint4(i)::bigint), 100) AS r,
        i > :n - 200 AS newest,
        created < now() - interval '130 days' AS settled,
        1000 + (i % 50) * 100 AS amount
    FROM (
        SELECT i, now() - interval '1095 days' + (interval '1093 days') * i / :n AS created
        FROM generate_series(1, :n) AS i
    ) AS spread
    """,
    """
    ALTER TABLE seed ADD COLUMN status text
    """,
    """
    UPDATE seed SET status = CASE
        WHEN newest AND purpose = 'ENROLL' THEN CASE WHEN r % 2 = 0 THEN 'AUTHORIZED' ELSE 'SUCCEEDED' END
        WHEN newest THEN 'SUCCEEDED'
        WHEN r >= 88 AND r < 93 THEN 'FAILED'
        WHEN r >= 93 AND r < 97 THEN 'CANCELED'
        WHEN NOT settled THEN 'SUCCEEDED'
        WHEN r >= 97 THEN 'PENDING'
        WHEN r >= 80 AND r < 85 THEN 'REFUNDED'
        WHEN r >= 85 AND r < 88 THEN 'PARTIALLY_REFUNDED'
        ELSE 'SUCCEEDED'
    END
    """,
    """
    INSERT INTO users (id, roles, created_at, updated_at)
    SELECT 'c' || k, '', now(), now() FROM generate_series(0, :users / 2 - 1) AS k
    UNION ALL SELECT 'p' || k, 'provider', now(), now() FROM generate_series(0, :users / 2 - 1) AS k
    UNION ALL SELECT 'u_heavy', 'provider', now(), now()
    UNION ALL SELECT 'u_old', 'provider', now(), now()
    """,
    """
    INSERT INTO enrolls (id, client_id, provider_id, title, price_minor, currency, status, created_at, updated_at)
    SELECT 'enr_' || stamp, payer, payee, 'Lesson ' || i, amount, 'USD',
        CASE WHEN newest THEN 'CONFIRMED' WHEN status IN ('FAILED', 'CANCELED') THEN 'CANCELLED'
             WHEN status = 'PENDING' THEN 'PENDING' ELSE 'COMPLETED' END,
        created, created + interval '1 hour'
    FROM seed WHERE purpose = 'ENROLL'
    """,
    """
    INSERT INTO payments (
        id, purpose, provider, mock, capture_method, status, currency, amount_minor, authorized_minor, captured_minor,
        refunded_minor, platform_bps, tax_bps, fee_minor, tax_minor, payee_minor, escrow_minor, split_base_minor,
        split_refunded_minor, payer_id, payee_id, enroll_id, package_code, credits, provider_payment_id,
        provider_key, failure_code, failure_message, paid_at, created_at, updated_at
    )
    SELECT id, purpose, 'STRIPE', false, CASE WHEN purpose = 'ENROLL' THEN 'MANUAL' ELSE 'AUTOMATIC' END, status,
        'USD', amount,
        CASE WHEN status = 'AUTHORIZED' THEN amount ELSE 0 END,
        CASE WHEN status IN ('SUCCEEDED', 'REFUNDED', 'PARTIALLY_REFUNDED') THEN amount ELSE 0 END,
        CASE WHEN status = 'REFUNDED' THEN amount WHEN status = 'PARTIALLY_REFUNDED' THEN amount / 2 ELSE 0 END,
        CASE WHEN purpose = 'ENROLL' THEN 1000 ELSE 0 END,
        CASE WHEN purpose = 'ENROLL' THEN 540 ELSE 0 END,
        CASE WHEN purpose = 'ENROLL' AND status IN ('SUCCEEDED', 'REFUNDED', 'PARTIALLY_REFUNDED') AND NOT newest
             THEN amount / 10 END,
        CASE WHEN purpose = 'ENROLL' AND status IN ('SUCCEEDED', 'REFUNDED', 'PARTIALLY_REFUNDED') AND NOT newest
             THEN amount * 54 / 1000 END,
        CASE WHEN purpose = 'ENROLL' AND status IN ('SUCCEEDED', 'REFUNDED', 'PARTIALLY_REFUNDED') AND NOT newest
             THEN amount - amount / 10 - amount * 54 / 1000 END,
        CASE WHEN newest AND purpose = 'ENROLL' AND status = 'SUCCEEDED' THEN amount ELSE 0 END,
        CASE WHEN purpose = 'ENROLL' AND status IN ('SUCCEEDED', 'REFUNDED', 'PARTIALLY_REFUNDED') AND NOT newest
             THEN amount END,
        0,
        payer,
        CASE WHEN purpose = 'ENROLL' THEN payee END,
        CASE WHEN purpose = 'ENROLL' THEN 'enr_' || stamp END,
        CASE WHEN purpose = 'PACKAGE' THEN 'standard' END,
        CASE WHEN purpose = 'PACKAGE' THEN 1100 END,
        CASE WHEN status <> 'FAILED' THEN 'pi_bench_' || i END,
        'payql-' || id || '-create',
        CASE WHEN status = 'FAILED' THEN 'card_declined' END,
        CASE WHEN status = 'FAILED' THEN 'Your card was declined.' END,
        CASE WHEN status IN ('SUCCEEDED', 'REFUNDED', 'PARTIALLY_REFUNDED') THEN created + interval '1 minute' END,
        created,
        created + CASE WHEN status IN ('REFUNDED', 'PARTIALLY_REFUNDED') THEN interval '1 day' ELSE interval '1 hour' END
    FROM seed
    """,
    """
    INSERT INTO refunds (
        id, payment_id, provider, amount_minor, currency, status, reason, provider_refund_id, provider_key,
        credits_voided, created_at, updated_at
    )
    SELECT 'ref_' || stamp, id, 'STRIPE', CASE WHEN status = 'REFUNDED' THEN amount ELSE amount / 2 END, 'USD',
        'SUCCEEDED', 'REQUESTED_BY_CUSTOMER', 're_bench_' || i, 'payql-refund-' || i, 0,
        created + interval '1 day', created + interval '1 day'
    FROM seed WHERE status IN ('REFUNDED', 'PARTIALLY_REFUNDED')
    """,
    """
    CREATE TEMP TABLE providers AS
    SELECT 'p' || k AS user_id FROM generate_series(0, :users / 2 - 1) AS k
    UNION ALL SELECT 'u_heavy' UNION ALL SELECT 'u_old'
    """,
    """
    INSERT INTO payout_accounts (id, user_id, provider, external_account_id, currency, status, verified_at,
        created_at, updated_at)
    SELECT 'pac_' || user_id, user_id, 'STRIPE', 'acct_' || user_id, 'USD', 'VERIFIED',
        now() - interval '1100 days', now() - interval '1100 days', now() - interval '1100 days'
    FROM providers
    """,
    """
    CREATE TEMP TABLE paid AS
    SELECT user_id, m, 'wdr_' || user_id || '_' || m AS id, 5000 + m * 10 AS amount,
        now() - interval '1095 days' + interval '30 days' * m AS at
    FROM providers, generate_series(1, 36) AS m
    """,
    """
    INSERT INTO withdrawals (id, user_id, payout_account_id, amount_minor, currency, status, period, provider_key,
        provider_payout_id, processed_at, created_at, updated_at)
    SELECT id, user_id, 'pac_' || user_id, amount, 'USD', 'COMPLETED', 'M' || m, 'payql-' || id,
        'po_' || id, at + interval '2 days', at, at + interval '2 days'
    FROM paid
    """,
    """
    INSERT INTO ledger_accounts (owner_id, kind, currency, balance_minor)
    SELECT user_id, kind, 'USD', 0 FROM providers, (VALUES ('payable'), ('payouts_in_flight')) AS kinds (kind)
    UNION ALL SELECT 'STRIPE', 'provider_cash', 'USD', 0
    """,
    """
    INSERT INTO ledger_transactions (id, kind, cause_type, cause_id, created_at)
    SELECT 'ltx_' || id, 'payout_settled', 'withdrawal', id, at + interval '2 days' FROM paid
    """,
    """
    INSERT INTO ledger_entries (transaction_id, account_id, amount_minor, currency)
    SELECT 'ltx_' || paid.id, accounts.id, CASE WHEN accounts.kind = 'payouts_in_flight' THEN amount ELSE -amount END,
        'USD'
    FROM paid JOIN ledger_accounts AS accounts
        ON (accounts.owner_id = paid.user_id AND accounts.kind = 'payouts_in_flight')
        OR (accounts.owner_id = 'STRIPE' AND accounts.kind = 'provider_cash')
    """,
    """
    UPDATE ledger_accounts SET balance_minor = totals.total
    FROM (SELECT account_id, SUM(amount_minor) AS total FROM ledger_entries GROUP BY account_id) AS totals
    WHERE ledger_accounts.id = totals.account_id
    """,
    """
    UPDATE ledger_accounts SET balance_minor = -250000 WHERE kind = 'payable'
    """,
]


def refuse(message: str) -> None:
    print(f"bench-scale: {message}", file=sys.stderr)
    raise SystemExit(2)


def checked_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL", "")
    if not url:
        refuse("set BENCH_DATABASE_URL to a PostgreSQL database this benchmark may empty (its name contains 'bench')")
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        refuse(f"BENCH_DATABASE_URL must be PostgreSQL, not {parsed.get_backend_name()}: the question is PostgreSQL's")
    if "bench" not in (parsed.database or ""):
        refuse(f"database {parsed.database!r} would be emptied: use one whose name contains 'bench'")
    return url


def in_schema(url: str, size: int) -> str:
    """`url` with the search path set to the size's own schema: each size has its database, side by side."""
    return (
        make_url(url)
        .update_query_dict({"options": f"-csearch_path=scale_{size}"})
        .render_as_string(hide_password=False)
    )


def build(url: str, size: int) -> None:
    """A fresh schema `scale_<size>` at `url`, migrated, with `size` payments."""
    engine = create_engine(normalise_url(url))
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS scale_{size} CASCADE"))
        connection.execute(text(f"CREATE SCHEMA scale_{size}"))
    engine.dispose()
    url = in_schema(url, size)
    upgrade(url)
    db = Database(url)
    Catalogue(Settings(_env_file=None).credit_packages).sync(db)  # type: ignore[call-arg]
    db.dispose()
    engine = create_engine(normalise_url(url))
    started = time.perf_counter()
    with engine.begin() as connection:
        params = {"n": size, "users": max(100, size // 100)}
        for statement in SEED:
            connection.execute(text(statement), {k: v for k, v in params.items() if f":{k}" in statement})
        recount(connection)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for (table,) in connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")):
            connection.execute(text(f'VACUUM ANALYZE "{table}"'))
    engine.dispose()
    print(f"seeded {size:,} payments in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def recount(connection: Any) -> None:
    """The payment counters, for a payql that keeps them (rows written in SQL bypass the ORM that moves them)."""
    try:
        from payql.models import counts  # noqa: PLC0415 - absent in a payql before them (the "before" figures)
    except ImportError:
        return
    counts.rebuild(connection)


def timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def graphql(services: Services, schema: Any, user: str, query: str, **variables: Any) -> Callable[[], object]:
    principal = Principal(user, frozenset({"provider"}))

    def run() -> object:
        context = Context(services=services, principal=principal, auth_error=None, request_id="bench")
        try:
            result = schema.execute_sync(query, variable_values=variables, context_value=context)
        finally:
            context.close()
        if result.errors:
            raise RuntimeError(result.errors)
        return result.data

    return run


def queries(url: str) -> tuple[Services, dict[str, Callable[[], object]]]:
    """What is timed at one size, each a call into the app; the caller closes the services."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=url, jwt_secret=SECRET, graphql_max_cost=10**6, payout_minimum="50.00"
    )
    services = bootstrap(settings)
    schema = build_schema(settings)
    with services.db.read() as session:
        mine = session.scalar(text("SELECT count(*) FROM payments WHERE payer_id = :u OR payee_id = :u"), {"u": HEAVY})
        deep_id = session.scalar(
            text("SELECT id FROM payments WHERE payer_id = :u OR payee_id = :u ORDER BY id DESC OFFSET :k LIMIT 1"),
            {"u": HEAVY, "k": int(mine * 0.9)},
        )
    deep = encode_cursor(deep_id)
    reconciler = services.reconciler
    now = datetime.now(UTC)
    cutoff = now - timedelta(seconds=settings.reconcile_after_seconds)
    since = now - timedelta(days=settings.reconcile_lookback_days)
    selections: dict[str, Callable[[], object]] = {
        "reconcile_pending_enrolls": lambda: reconciler._ids(reconciler._pending_enrolls(cutoff), 1000),  # noqa: SLF001
        "reconcile_unsent_payments": lambda: reconciler._ids(reconciler._unsent_payments(cutoff), 1000),  # noqa: SLF001
        "reconcile_unsent_refunds": lambda: reconciler._ids(reconciler._unsent_refunds(cutoff), 1000),  # noqa: SLF001
        "reconcile_payouts_in_flight": lambda: reconciler._ids(reconciler._payouts_in_flight(cutoff), 1000),  # noqa: SLF001
        "reconcile_waiting_payments": lambda: reconciler._ids(reconciler._waiting_payments(cutoff, since), 1000),  # noqa: SLF001
    }
    for name, select_due in selections.items():
        if select_due():
            raise RuntimeError(f"{name}: something is due; the benchmark measures runs with nothing due")
    timed: dict[str, Callable[[], object]] = {
        "list_total_count": graphql(services, schema, HEAVY, LIST),
        "list_deep_page": graphql(services, schema, HEAVY, LIST, after=deep),
        "list_status_succeeded": graphql(services, schema, HEAVY, LIST, status="SUCCEEDED"),
        "list_status_refunded": graphql(services, schema, HEAVY, LIST, status="REFUNDED"),
        "list_status_failed_deep": graphql(services, schema, HEAVY, LIST, status="FAILED", after=deep),
        "balances": graphql(services, schema, HEAVY, BALANCES),
        "old_provider_page": graphql(services, schema, OLD, LIST),
        **selections,
        "reconcile_run": reconciler.run,
        "payouts_run": services.payouts.run,
    }
    return services, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="payment counts, comma-separated (default 10k, 1M)")
    parser.add_argument("--runs", type=int, default=21, help="interleaved rounds per query (the median is shown)")
    parser.add_argument("--reuse", action="store_true", help="measure the schemas a previous run seeded")
    args = parser.parse_args()
    url = checked_url()
    sizes = [int(size) for size in args.sizes.split(",")]
    if not args.reuse:
        ensure_database(url)
        for size in sizes:
            build(url, size)
    opened = {size: queries(in_schema(url, size)) for size in sizes}
    times: dict[int, dict[str, list[float]]] = {size: defaultdict(list) for size in sizes}
    try:
        for size in sizes:  # warm: the first call compiles and caches each statement
            for call in opened[size][1].values():
                call()
        for _ in range(args.runs):  # interleaved rounds: the machine's noise falls on every size alike
            for size in sizes:
                for name, call in opened[size][1].items():
                    times[size][name].append(timed_ms(call))
    finally:
        for services, _ in opened.values():
            services.close()
    results = {size: {name: round(statistics.median(runs), 2) for name, runs in times[size].items()} for size in sizes}
    names = list(results[sizes[0]])
    print(f"{'query (median ms)':32}" + "".join(f"{size:>12,}" for size in sizes) + "       ratio")
    for name in names:
        ratio = results[sizes[-1]][name] / results[sizes[0]][name] if results[sizes[0]][name] else 0.0
        print(f"{name:32}" + "".join(f"{results[size][name]:12.2f}" for size in sizes) + f"{ratio:12.2f}")
    ratios = {
        name: round(results[sizes[-1]][name] / results[sizes[0]][name], 2) if results[sizes[0]][name] else None
        for name in names
    }
    print(json.dumps({"sizes": sizes, "median_ms": {str(size): results[size] for size in sizes}, "ratio": ratios}))


if __name__ == "__main__":
    main()

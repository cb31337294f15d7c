"""The `payql` console script (DESIGN.md §9)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from payql import logs
from payql.batches import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, check_concurrency
from payql.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from payql.services import Services


def _configure_logging(settings: Settings) -> None:
    """The server's logging (and a command's with LOG_FORMAT=json). A command in text format keeps Python's
    default: its warnings and errors on stderr as bare lines, which cron mails and scripts read."""
    logs.configure(settings.log_level, settings.log_format)


@contextmanager
def _services(settings: Settings) -> Iterator[Services]:
    """The services a command runs on, built by the one composition root and closed when it is done."""
    from payql.bootstrap import bootstrap  # noqa: PLC0415 - commands that need no services stay light

    services = bootstrap(settings)
    try:
        yield services
    finally:
        services.close()


def app_factory() -> object:
    """uvicorn's factory: `uvicorn --factory payql.cli:app_factory` (used by `payql serve`)."""
    from payql.app import create_app  # noqa: PLC0415 - built only when a server starts

    settings = load_settings()
    _configure_logging(settings)
    return create_app(settings)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from payql import serving  # noqa: PLC0415 - uvicorn, only for a server
    from payql.migrate import upgrade  # noqa: PLC0415

    if args.no_migrate:
        from payql.preflight import check  # noqa: PLC0415

        check(settings.database_url, migrated=True)
    else:
        upgrade(settings.database_url)
    # The app (built by the factory, in each worker) reads its settings again: it must know where it listens, for
    # the links it builds on HOST and PORT when PUBLIC_URL is unset (`Settings.base_url`).
    if args.host:
        os.environ["HOST"] = args.host
    if args.port:
        os.environ["PORT"] = str(args.port)
    try:
        serving.run(
            "payql.cli:app_factory",
            host=args.host or settings.host,
            port=args.port or settings.port,
            workers=args.workers,
            log_level=settings.log_level.lower(),
            log_config=logs.logging_config(settings.log_level, settings.log_format),
            proxy_headers=False,
            ws_max_size=settings.subscription_max_message_bytes,  # a bigger WebSocket message is refused (1009)
        )
    except serving.CannotListen as exc:
        print(f"payql serve: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from payql.migrate import upgrade  # noqa: PLC0415
    from payql.preflight import shown_url  # noqa: PLC0415

    upgrade(settings.database_url, args.revision)
    print(f"migrated {shown_url(settings.database_url)} to {args.revision}")
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from payql.auth import issue_token  # noqa: PLC0415

    if args.ttl > settings.jwt_max_lifetime:
        print(
            f"payql: --ttl {args.ttl} is longer than JWT_MAX_LIFETIME ({settings.jwt_max_lifetime} seconds)",
            file=sys.stderr,
        )
        return 2
    print(issue_token(settings, args.sub, roles=args.role or (), ttl_seconds=args.ttl))
    return 0


def cmd_schema(_args: argparse.Namespace, settings: Settings) -> int:
    from payql.schema import build_schema  # noqa: PLC0415

    print(build_schema(settings).as_str())
    return 0


def cmd_demo(_args: argparse.Namespace, settings: Settings) -> int:
    from payql.demo import run_demo  # noqa: PLC0415

    print(run_demo(settings))
    return 0


def cmd_ledger_check(_args: argparse.Namespace, settings: Settings) -> int:
    from payql.services.checks import ledger_problems  # noqa: PLC0415

    with _services(settings) as services, services.db.read() as session:
        problems = ledger_problems(session)
    for problem in problems:
        print(problem)
    print(f"ledger check: {len(problems)} problem(s)" if problems else "ledger check: ok")
    return 1 if problems else 0


def cmd_credits_expire(_args: argparse.Namespace, settings: Settings) -> int:
    with _services(settings) as services:
        expired = services.credits.expire()
    print(f"credits expire: {expired} lot(s) expired")
    return 0


def cmd_holds_expire(_args: argparse.Namespace, settings: Settings) -> int:
    with _services(settings) as services:
        run = services.holds.expire()
    if run.skipped:
        print("holds expire: another replica is running it")
    else:
        print(f"holds expire: {run.expired} hold(s) released, {run.failed} to retry")
    return 1 if run.failed else 0


def cmd_payouts_run(args: argparse.Namespace, settings: Settings) -> int:
    with _services(settings) as services:
        run = services.payouts.run(auto_approve=args.auto_approve, concurrency=args.concurrency)
    if run.skipped:
        print("payouts run: another replica is running it")
        return 0
    print(f"payouts run: {run.created} created, {run.completed} completed, {run.failed} failed, {run.pending} pending")
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta  # noqa: PLC0415

    older_than = None if args.older_than is None else timedelta(seconds=args.older_than)
    if args.report:
        with _services(settings) as services:
            report = services.reconciler.report(older_than=older_than, limit=args.limit, concurrency=args.concurrency)
        for difference in report.differences:
            print(f"  differs: {difference}")
        for problem in report.problems:
            print(f"  not compared: {problem}")
        print(
            f"reconcile --report: {report.checked} object(s) compared with their provider, "
            f"{len(report.differences)} difference(s), {report.failed} not compared"
        )
        return 1 if report.differences or report.failed else 0
    with _services(settings) as services:
        run = services.reconciler.run(
            older_than=older_than, limit=args.limit, full=args.full, concurrency=args.concurrency
        )
    if run.skipped:
        print("reconcile: another replica is running it")
        return 0
    for problem in run.problems:
        print(f"  not finished: {problem}")
    print(
        f"reconcile: {run.created} payment(s) created, {run.enrolls} enroll action(s) finished, "
        f"{run.refunds} refund(s) sent, {run.payouts} payout(s) settled or sent, "
        f"{run.refreshed} payment(s) updated from the provider, {run.disputes} dispute(s) updated from the provider, "
        f"{run.failed} to retry"
    )
    return 1 if run.failed else 0


def cmd_idempotency_purge(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta  # noqa: PLC0415

    with _services(settings) as services:
        purged = services.idempotency.purge(timedelta(hours=args.older_than_hours))
    print(f"idempotency purge: {purged} key(s) forgotten")
    return 0


def _concurrency(text: str) -> int:
    try:
        return check_concurrency(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _concurrency_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--concurrency",
        type=_concurrency,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"at most N {what} in flight with the provider at once, 1 to {MAX_CONCURRENCY} "
        f"(default {DEFAULT_CONCURRENCY}; 1 is one after another)",
    )


# What a command needs of the database, checked before it runs (`payql.preflight`): nothing, that it answers
# (`migrate`, and `serve` and `demo`, which migrate first), or that it is migrated to the head revision.
REACHABLE = "reachable"
MIGRATED = "migrated"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payql", description="payql: a GraphQL payments service")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="apply migrations and serve HTTP with uvicorn")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    serve.set_defaults(run=cmd_serve, database=REACHABLE)

    migrate = commands.add_parser("migrate", help="apply the database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(run=cmd_migrate, database=REACHABLE)

    token = commands.add_parser("token", help="print a development JWT signed with the configured key")
    token.add_argument("--sub", required=True, help="the user id")
    token.add_argument("--role", action="append", help="a role (admin, provider); repeat for several")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (at most JWT_MAX_LIFETIME)")
    token.set_defaults(run=cmd_token, database=None)

    schema = commands.add_parser("schema", help="print the GraphQL SDL")
    schema.set_defaults(run=cmd_schema, database=None)

    demo = commands.add_parser("demo", help="create sample users, an enroll and paid mock payments; print tokens")
    demo.set_defaults(run=cmd_demo, database=REACHABLE)

    ledger = commands.add_parser("ledger", help="ledger tools")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    check = ledger_commands.add_parser(
        "check", help="verify the ledger's invariants; exit 1 and print the offending rows otherwise"
    )
    check.set_defaults(run=cmd_ledger_check)

    credits = commands.add_parser("credits", help="credit tools")
    credit_commands = credits.add_subparsers(dest="credits_command", required=True)
    expire = credit_commands.add_parser("expire", help="post the unspent remainder of lapsed credit lots as breakage")
    expire.set_defaults(run=cmd_credits_expire)

    holds = commands.add_parser("holds", help="payment hold tools")
    hold_commands = holds.add_subparsers(dest="holds_command", required=True)
    release = hold_commands.add_parser("expire", help="release holds about to lapse and expire their enrolls")
    release.set_defaults(run=cmd_holds_expire)

    payouts = commands.add_parser("payouts", help="provider payouts")
    payout_commands = payouts.add_subparsers(dest="payouts_command", required=True)
    batch = payout_commands.add_parser("run", help="send approved withdrawals; settle those in flight")
    batch.add_argument(
        "--auto-approve", action="store_true", help="the weekly run: first pay out every verified provider's balance"
    )
    _concurrency_option(batch, "withdrawals")
    batch.set_defaults(run=cmd_payouts_run)

    reconcile = commands.add_parser(
        "reconcile",
        help="finish provider calls a crash or an outage left pending; re-fetch stale open payments and disputes",
    )
    reconcile.add_argument(
        "--older-than",
        type=int,
        default=None,
        metavar="SECONDS",
        help="only rows untouched this long (default RECONCILE_AFTER_SECONDS)",
    )
    reconcile.add_argument("--limit", type=int, default=1000, help="at most this many rows of each kind per run")
    reconcile.add_argument(
        "--full",
        action="store_true",
        help="also re-read and apply every payment, payout and dispute of RECONCILE_LOOKBACK_DAYS (as --report)",
    )
    reconcile.add_argument(
        "--report",
        action="store_true",
        help="change nothing: list every difference with the providers in RECONCILE_LOOKBACK_DAYS (exit 1 if any)",
    )
    _concurrency_option(reconcile, "objects")
    reconcile.set_defaults(run=cmd_reconcile)

    idempotency = commands.add_parser("idempotency", help="idempotency keys")
    idempotency_commands = idempotency.add_subparsers(dest="idempotency_command", required=True)
    purge = idempotency_commands.add_parser("purge", help="forget idempotency keys older than 24 hours")
    purge.add_argument("--older-than-hours", type=int, default=24)
    purge.set_defaults(run=cmd_idempotency_purge)
    return parser


def _subcommand(args: argparse.Namespace) -> list[str]:
    return [value for key, value in vars(args).items() if key.endswith("_command") and isinstance(value, str)]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"payql: configuration error: {problem}", file=sys.stderr)
        return 2
    if args.command != "serve":  # a server's lines belong to requests, not to the command that started it
        logs.note_command(" ".join([args.command, *_subcommand(args)]))
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - commands that need no database stay light

    from payql.preflight import DatabaseProblem, check, describe_failure  # noqa: PLC0415

    try:
        need = getattr(args, "database", MIGRATED)
        if need is not None:
            check(settings.database_url, migrated=need == MIGRATED)
        if settings.log_format == "json":  # after the check: what importing Alembic logs is no news to an operator
            _configure_logging(settings)
        result: int = args.run(args, settings)
    except DatabaseProblem as exc:
        print(f"payql: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:  # the database went away (or was rolled back) while the command ran
        print(f"payql: {describe_failure(settings.database_url, exc)}", file=sys.stderr)
        return 2
    finally:
        logs.note_command(None)  # `main` run in-process (the tests) leaves no command behind
    return result


if __name__ == "__main__":
    sys.exit(main())

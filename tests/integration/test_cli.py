"""The `payql` console script: token, schema, migrate, demo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from payql.auth import TokenVerifier
from payql.cli import main
from payql.db import Database
from payql.models import Payment
from payql.models.enums import PaymentStatus
from payql.settings import Settings

SECRET = "cli-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("JWT_SECRET", SECRET)
    return url


def test_token_prints_a_jwt_the_service_accepts(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--sub", "alice", "--role", "admin", "--role", "provider", "--ttl", "60"]) == 0

    token = capsys.readouterr().out.strip()
    principal = TokenVerifier(Settings(_env_file=None)).verify(token)  # type: ignore[call-arg]
    assert principal.user_id == "alice"
    assert principal.roles == frozenset({"admin", "provider"})


def test_schema_prints_the_sdl(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0

    out = capsys.readouterr().out
    assert "createIntent(input: CreateIntentInput!): CreateIntentPayload!" in out
    assert out == (Path(__file__).resolve().parents[2] / "schema.graphql").read_text(encoding="utf-8")


def test_migrate_creates_the_tables(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0

    engine = create_engine(env)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "payments",
        "refunds",
        "enrolls",
        "users",
        "credit_packages",
        "webhook_events",
        "idempotency_records",
    } <= tables
    assert "head" in capsys.readouterr().out


def test_demo_creates_paid_mock_payments_and_prints_tokens(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0

    out = capsys.readouterr().out
    assert "MOCK MODE" in out
    tokens = re.findall(r"\((demo-\w+)\):\s+(\S+)", out)
    verifier = TokenVerifier(Settings(_env_file=None))  # type: ignore[call-arg]
    assert {verifier.verify(token).user_id for _, token in tokens} == {"demo-client", "demo-provider", "demo-admin"}
    db = Database(env)
    with db.read() as session:
        statuses = sorted(payment.status for payment in session.query(Payment))
    db.dispose()
    assert statuses == sorted([PaymentStatus.SUCCEEDED, PaymentStatus.AUTHORIZED, PaymentStatus.SUCCEEDED])


def test_a_bad_configuration_is_a_clear_error(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", "short")

    assert main(["token", "--sub", "x"]) == 2
    assert "JWT_SECRET must be at least 32 bytes" in capsys.readouterr().err


def test_ledger_check_is_clean_after_the_demo_and_names_what_is_broken(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    assert main(["ledger", "check"]) == 0
    assert capsys.readouterr().out.strip().endswith("ledger check: ok")

    engine = create_engine(env)
    with engine.begin() as connection:  # a balance edited in place, and an entry that unbalances its transaction
        connection.execute(text("UPDATE ledger_accounts SET balance_minor = balance_minor + 1 WHERE kind = 'revenue'"))
        connection.execute(text("UPDATE payments SET refunded_minor = captured_minor + 1 WHERE status = 'SUCCEEDED'"))
    engine.dispose()

    assert main(["ledger", "check"]) == 1
    out = capsys.readouterr().out
    assert "revenue" in out
    assert "but its entries sum to" in out
    assert "succeeded refunds sum to 0" in out
    assert "problem(s)" in out


def test_payouts_run_and_holds_expire_report_what_they_did(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    capsys.readouterr()

    assert main(["payouts", "run", "--auto-approve"]) == 0
    assert main(["holds", "expire"]) == 0
    assert main(["credits", "expire"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out == [
        "payouts run: 0 created, 0 completed, 0 failed, 0 pending",
        "holds expire: 0 hold(s) released, 0 to retry",
        "credits expire: 0 lot(s) expired",
    ]


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        # what SQLite makes of an integer too large for 64 bits: a REAL, and every sum over it a float
        ("UPDATE payments SET amount_minor = 9.3e18 WHERE status = 'SUCCEEDED'", "payments.amount_minor"),
        ("UPDATE enrolls SET price_minor = 1.5", "enrolls.price_minor"),
        # an amount beyond 10^15 minor units, which payql refuses on input, in a payment and in a ledger entry
        ("UPDATE payments SET captured_minor = 1000000000000001 WHERE status = 'SUCCEEDED'", "payments.captured_minor"),
        (
            "UPDATE ledger_entries SET amount_minor = 9223372036854775807 WHERE amount_minor > 0",
            "ledger_entries.amount_minor",
        ),
    ],
)
def test_ledger_check_names_an_amount_that_is_not_a_whole_bounded_number(
    env: str, capsys: pytest.CaptureFixture[str], statement: str, named: str
) -> None:
    assert main(["demo"]) == 0
    engine = create_engine(env)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()
    capsys.readouterr()

    assert main(["ledger", "check"]) == 1

    out = capsys.readouterr().out
    assert f"{named} of " in out
    assert "is not a whole amount within 1000000000000000 minor units" in out
    assert "problem(s)" in out

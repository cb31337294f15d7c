"""The `payql` console script: token, schema, migrate, demo."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import pytest
from conftest import PLANTED_PIECE, PLANTED_SECRETS, planted_pieces
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from servers import free_port, payql
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


# Every variable that can make the development secret unsafe; the tests below set exactly the ones they mean.
LIVE_VARIABLES = (
    "PAYQL_ENV",
    "JWT_SECRET",
    "JWT_ALGORITHM",
    "JWT_PUBLIC_KEY",
    "JWT_PRIVATE_KEY",
    "JWT_JWKS_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "YOOKASSA_SHOP_ID",
    "YOOKASSA_SECRET_KEY",
    "YOOKASSA_PAYOUT_AGENT_ID",
    "YOOKASSA_PAYOUT_SECRET_KEY",
    "PAYQL_FAULTS",
)
STRIPE_KEYS = {
    "STRIPE_SECRET_KEY": PLANTED_SECRETS["STRIPE_SECRET_KEY"],
    "STRIPE_WEBHOOK_SECRET": PLANTED_SECRETS["STRIPE_WEBHOOK_SECRET"],
}
YOOKASSA_KEYS = {"YOOKASSA_SHOP_ID": "506751", "YOOKASSA_SECRET_KEY": PLANTED_SECRETS["YOOKASSA_SECRET_KEY"]}
YOOKASSA_PAYOUT_KEYS = {
    "YOOKASSA_PAYOUT_AGENT_ID": "505050",
    "YOOKASSA_PAYOUT_SECRET_KEY": PLANTED_SECRETS["YOOKASSA_PAYOUT_SECRET_KEY"],
}
POSTGRES_URL = f"postgresql://payql:{PLANTED_SECRETS['DATABASE_PASSWORD']}@db.internal:5432/payql"


@pytest.fixture
def live_env(env: str, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The `env` fixture without a JWT_SECRET, PAYQL_ENV or provider keys: each test adds its own."""
    for name in LIVE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param(STRIPE_KEYS, id="stripe-keys"),
        pytest.param({"STRIPE_SECRET_KEY": PLANTED_SECRETS["STRIPE_SECRET_KEY"]}, id="stripe-key-only"),
        pytest.param(YOOKASSA_KEYS, id="yookassa-keys"),
        pytest.param(YOOKASSA_PAYOUT_KEYS, id="yookassa-payout-keys"),
        pytest.param({"DATABASE_URL": POSTGRES_URL}, id="postgresql"),
        pytest.param({**STRIPE_KEYS, "PAYQL_ENV": "test"}, id="stripe-keys-in-test"),
        pytest.param({**STRIPE_KEYS, "PAYQL_ENV": "development"}, id="stripe-keys-in-development"),
        pytest.param({"PAYQL_ENV": "production"}, id="production"),
    ],
)
def test_the_development_secret_is_refused_unless_both_providers_are_mocks_on_sqlite(
    live_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variables: dict[str, str]
) -> None:
    # given no JWT_SECRET (the published development secret) and a setup that is not a laptop sandbox
    for name, value in variables.items():
        live_env.setenv(name, value)

    # when anyone mints an admin token
    code = main(["token", "--sub", "mallory", "--role", "admin"])

    # then nothing is signed: one line naming JWT_SECRET, exit 2
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("payql: configuration error: ")
    assert "JWT_SECRET" in line
    assert not [piece for piece in planted_pieces(PLANTED_PIECE) if piece in line]  # names, never values


def test_payql_serve_refuses_to_start_with_the_development_secret_and_provider_keys(tmp_path: Path) -> None:
    # given live-looking Stripe keys, SQLite, no PAYQL_ENV and no JWT_SECRET
    variables = {**STRIPE_KEYS, "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}", "PORT": str(free_port())}

    # when the server is started (before the fix it served: the timeout ends the test instead of hanging it)
    try:
        result = payql("serve", env=variables, cwd=tmp_path, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("payql serve started with the development JWT secret and Stripe keys")

    # then it refuses, naming the variable to set
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_development_secret_still_works_in_mock_mode_on_sqlite(
    live_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--sub", "alice", "--role", "admin"]) == 0

    token = capsys.readouterr().out.strip()
    assert TokenVerifier(Settings(_env_file=None)).verify(token).is_admin  # type: ignore[call-arg]


def test_provider_keys_and_postgresql_start_with_a_secret_of_their_own_or_rs256_keys(
    live_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {**STRIPE_KEYS, **YOOKASSA_KEYS, "DATABASE_URL": POSTGRES_URL}.items():
        live_env.setenv(name, value)

    live_env.setenv("JWT_SECRET", PLANTED_SECRETS["JWT_SECRET"])
    assert main(["token", "--sub", "alice"]) == 0

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    live_env.delenv("JWT_SECRET")
    live_env.setenv("JWT_ALGORITHM", "RS256")
    live_env.setenv("JWT_PRIVATE_KEY", pem.decode())
    assert main(["token", "--sub", "alice"]) == 0

    tokens = capsys.readouterr().out.split()
    assert len(tokens) == 2


# One configuration error of each kind, every secret variable holding a planted value (or as many as the error
# allows); the variable each message must name.
CONFIGURATION_ERRORS = [
    pytest.param(
        {**STRIPE_KEYS, **YOOKASSA_KEYS, "JWT_SECRET": PLANTED_SECRETS["SHORT_JWT_SECRET"]},
        ["JWT_SECRET"],
        id="short-secret",
    ),
    pytest.param({**STRIPE_KEYS, **YOOKASSA_KEYS, "DATABASE_URL": POSTGRES_URL}, ["JWT_SECRET"], id="dev-secret"),
    pytest.param(
        {
            "PAYQL_ENV": "production",
            "JWT_SECRET": PLANTED_SECRETS["JWT_SECRET"],
            "STRIPE_SECRET_KEY": PLANTED_SECRETS["STRIPE_SECRET_KEY"],
            **YOOKASSA_KEYS,
            "DATABASE_URL": POSTGRES_URL,
        },
        ["STRIPE_WEBHOOK_SECRET"],
        id="production-without-webhook-secret",
    ),
    pytest.param(
        {"PAYQL_ENV": "production", **STRIPE_KEYS, **YOOKASSA_KEYS, "DATABASE_URL": POSTGRES_URL},
        ["JWT_SECRET"],
        id="production-dev-secret",
    ),
    pytest.param(
        {"PAYQL_FAULTS": "capture", "JWT_SECRET": PLANTED_SECRETS["JWT_SECRET"], **STRIPE_KEYS, **YOOKASSA_KEYS},
        ["PAYQL_FAULTS"],
        id="faults-outside-tests",
    ),
    pytest.param(
        {"PORT": "eighty", "JWT_SECRET": PLANTED_SECRETS["JWT_SECRET"], **STRIPE_KEYS, **YOOKASSA_KEYS},
        ["PORT"],
        id="not-a-number",
    ),
    pytest.param(
        {"JWT_ALGORITHM": "HS512", "JWT_SECRET": PLANTED_SECRETS["JWT_SECRET"], **STRIPE_KEYS, **YOOKASSA_KEYS},
        ["JWT_ALGORITHM"],
        id="unknown-algorithm",
    ),
    pytest.param(
        {"JWT_MAX_LIFETIME": "0", "JWT_SECRET": PLANTED_SECRETS["JWT_SECRET"], **STRIPE_KEYS, **YOOKASSA_KEYS},
        ["JWT_MAX_LIFETIME"],
        id="lifetime-not-positive",
    ),
    pytest.param(
        {"CREDIT_PACKAGES": "{not json", "JWT_SECRET": PLANTED_SECRETS["JWT_SECRET"], **STRIPE_KEYS, **YOOKASSA_KEYS},
        ["CREDIT_PACKAGES"],
        id="not-json",
    ),
    pytest.param(
        {
            "PAYQL_ENV": "production",
            "JWT_SECRET": PLANTED_SECRETS["SHORT_JWT_SECRET"],
            "STRIPE_SECRET_KEY": PLANTED_SECRETS["STRIPE_SECRET_KEY"],
            "PAYQL_FAULTS": "refund",
            "DATABASE_URL": POSTGRES_URL,
        },
        ["JWT_SECRET", "STRIPE_WEBHOOK_SECRET", "PAYQL_FAULTS"],
        id="several-at-once",
    ),
]


@pytest.mark.parametrize(("variables", "named"), CONFIGURATION_ERRORS)
def test_configuration_errors_name_the_variable_and_never_echo_a_secret(
    live_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    variables: dict[str, str],
    named: list[str],
) -> None:
    # given a configuration that cannot start, its secret variables holding distinctive values
    for name, value in variables.items():
        live_env.setenv(name, value)

    # when any command loads it
    with caplog.at_level(logging.DEBUG):
        code = main(["token", "--sub", "x"])

    # then one line per problem, each naming its variable, exit 2
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == len(named)
    for line, variable in zip(lines, named, strict=True):
        assert line.startswith("payql: configuration error: ")
        assert variable in line
    # and no secret, nor any four characters of one, in the output or a log line
    said = out + err + "\n".join(record.getMessage() for record in caplog.records)
    assert "input" not in said
    assert [piece for piece in sorted(planted_pieces(4)) if piece in said] == []


def test_token_refuses_a_ttl_above_jwt_max_lifetime(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_MAX_LIFETIME", "3600")

    assert main(["token", "--sub", "alice", "--ttl", "3601"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "payql: --ttl 3601 is longer than JWT_MAX_LIFETIME (3600 seconds)"

    assert main(["token", "--sub", "alice", "--ttl", "3600"]) == 0
    assert TokenVerifier(Settings(_env_file=None)).verify(capsys.readouterr().out.strip()).user_id == "alice"  # type: ignore[call-arg]


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

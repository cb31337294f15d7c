"""Shared fixtures: a real database per test (SQLite always, PostgreSQL too when TEST_POSTGRES_URL is set),
the app built by `create_app` with mock providers, and an HTTP client that speaks GraphQL with real JWTs."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.shapes import shapes_match_the_sdks  # noqa: F401 (autouse: what the provider fakes sent fits the SDKs)
from fakes.stripe_api import FakeStripe
from sqlalchemy import create_engine, text
from support import Api

from payql.app import create_app
from payql.db import Database, normalise_url
from payql.migrate import upgrade
from payql.models import Base, counts
from payql.services.checks import ledger_problems
from payql.settings import Settings

TEST_SECRET = "payql-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
STRIPE_SECRET_KEY = "sk_test_payql_fake"
STRIPE_WEBHOOK_SECRET = "whsec_payql_test_secret"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]
# PostgreSQL only: lock modes, and subscribers of two servers on one database (LISTEN/NOTIFY)
collect_ignore = (
    []
    if POSTGRES_URL
    else [
        "integration/test_locks.py",
        "integration/test_prepared_reads.py",
        "e2e/test_subscriptions_postgres.py",
        "e2e/test_webhook_lookups_postgres.py",
    ]
)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


# Distinctive values the configuration tests (test_cli.py) put in secret variables: neither an error message nor a
# log line may carry them, nor a piece of them (pydantic once echoed inputs, truncated to a key's tail).
PLANTED_SECRETS = {
    "JWT_SECRET": "Jq7Vx2Lm9Rt4Wz8Kp3Nc6Bd1Hf5Gs0Ya2Ue7OiQ",
    "STRIPE_SECRET_KEY": "sk_live_51Hq8ZtKv2Xm9Pw4Rn7Lc3Jd6Bf0GsTy",
    "STRIPE_WEBHOOK_SECRET": "whsec_Wd4Fh8Jk2Lz6Xc0Vb3Nm7Qa5Sp9Ee1Rr",
    "YOOKASSA_SECRET_KEY": "live_Yk3Tb8Mw1Qs6Zr0Pn4Vc7Hx2Gj5Lf9Dd",
    "YOOKASSA_PAYOUT_SECRET_KEY": "live_Po7Gw2Xk9Lm4Tz1Rb6Nv3Jd8Hs0Qc5Fe",
    "DATABASE_PASSWORD": "Pg6Rz1Wq8Ts3Ym5Xk0Nv7Ub2Ha4Jc9Ld",
    "SHORT_JWT_SECRET": "Sh9Tq2Zx5Wm8Kv",
}
PLANTED_PIECE = 6  # any run of this many characters of a planted secret counts as a leak in a log line


def planted_pieces(length: int) -> set[str]:
    """Every run of `length` characters of every planted secret."""
    return {value[i : i + length] for value in PLANTED_SECRETS.values() for i in range(len(value) - length + 1)}


# What must never reach a log: secrets, bearer tokens, card numbers.
SECRET_PATTERNS = [
    re.compile(re.escape(TEST_SECRET)),
    re.compile("|".join(re.escape(piece) for piece in sorted(planted_pieces(PLANTED_PIECE)))),
    re.compile(r"sk_test_\w+|whsec_\w+"),
    re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+"),  # a JWT
    re.compile(r"\b4242424242424242\b|\b5555555555554477\b"),
]


@pytest.fixture(scope="session", autouse=True)
def no_secrets_in_logs() -> Iterator[None]:
    """Every log line of the whole suite (INFO and up, with tracebacks) is scanned for secrets at the end."""
    collector = _Collector()
    collector.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(collector)
    root.setLevel(logging.INFO)
    yield
    root.removeHandler(collector)
    root.setLevel(level)
    leaks = [line[:200] for line in collector.lines if any(p.search(line) for p in SECRET_PATTERNS)]
    assert collector.lines, "the log scan saw no log lines at all"
    assert leaks == [], f"secrets reached the logs: {leaks[:5]}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "payql.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    assert POSTGRES_URL is not None
    engine = create_engine(normalise_url(POSTGRES_URL))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(POSTGRES_URL)
    return POSTGRES_URL


def truncate_postgres(url: str) -> None:
    engine = create_engine(normalise_url(url))
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        target = tmp_path / "payql.db"
        shutil.copyfile(sqlite_template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_migrated")
    truncate_postgres(url)
    return url


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "payql_env": "test",
        "stripe_secret_key": None,
        "yookassa_shop_id": None,
        "yookassa_secret_key": None,
        "yookassa_payout_agent_id": None,
        "yookassa_payout_secret_key": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The test's database. After the test, the ledger's invariants must hold (`payql ledger check`), and every
    user's payment counters must equal a count of their payments."""
    database = Database(settings.database_url)
    yield database
    with database.read() as session:
        problems = ledger_problems(session) + counts.differences(session.connection())
    database.dispose()
    assert problems == [], "ledger check failed:\n" + "\n".join(problems)


@pytest.fixture
def api(settings: Settings, db: Database) -> Iterator[Api]:
    app = create_app(settings, db=db)
    with Api(app, settings) as client:
        yield client


# The Stripe end-to-end modules share these two: the official SDK against the stateful fake, payql's app on the
# test's database. A module takes them under its own names, `fake, api = stripe_fake, stripe_api` (the app runs
# against the module's `fake`), and may set PROVIDER_TIMEOUT_MS for its outage cases.


@pytest.fixture
def stripe_fake() -> Iterator[FakeStripe]:
    with FakeStripe(secret_key=STRIPE_SECRET_KEY) as server:
        yield server


@pytest.fixture
def stripe_api(request: pytest.FixtureRequest, database_url: str, db: Database, fake: FakeStripe) -> Iterator[Api]:
    settings = make_settings(
        database_url,
        stripe_secret_key=STRIPE_SECRET_KEY,
        stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        stripe_api_base=fake.url,
        provider_timeout_ms=getattr(request.module, "PROVIDER_TIMEOUT_MS", 1500),
    )
    with Api(create_app(settings, db=db), settings) as client:
        yield client


@pytest.fixture
def stripe_cli(
    request: pytest.FixtureRequest,
    database_url: str,
    fake: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The operator's environment for `payql …` commands run in this process, configured like `stripe_api`'s app
    (a module takes it as `cli = stripe_cli`)."""
    monkeypatch.chdir(tmp_path)
    values = {
        "DATABASE_URL": database_url,
        "PAYQL_ENV": "test",
        "JWT_SECRET": TEST_SECRET,
        "STRIPE_SECRET_KEY": STRIPE_SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "STRIPE_API_BASE": fake.url,
        "PROVIDER_TIMEOUT_MS": str(getattr(request.module, "PROVIDER_TIMEOUT_MS", 1500)),
        "LOG_LEVEL": "WARNING",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def stripe_deliver(api: Api, fake: FakeStripe, event: dict[str, object]) -> str:
    """Deliver `event` as Stripe signs it to `stripe_api`'s webhook route; the status payql answered 200 with."""
    body, headers = fake.signed_delivery(event, STRIPE_WEBHOOK_SECRET)
    answer = api.request("POST", "/webhooks/stripe", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status

"""The console script on a database that is not there or not migrated: one line on stderr, exit 2, no traceback,
no password (issue #15 part 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import POSTGRES_URL
from servers import free_port, payql
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from payql.migrate import upgrade
from payql.preflight import head_revision

SECRET = "cli-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "Pg6Rz1Wq8Ts3Ym5Xk0Nv7Ub2Ha4Jc9Ld"

# Every command that reads or writes the database, with the arguments it needs.
DATABASE_COMMANDS = [
    ("ledger", "check"),
    ("reconcile",),
    ("reconcile", "--report"),
    ("payouts", "run"),
    ("holds", "expire"),
    ("credits", "expire"),
    ("idempotency", "purge"),
    ("serve", "--no-migrate"),
]


def _env(url: str) -> dict[str, str]:
    return {"DATABASE_URL": url, "JWT_SECRET": SECRET}


def assert_one_line(result: object, *needles: str) -> str:
    stdout, stderr, code = result.stdout, result.stderr, result.returncode  # type: ignore[attr-defined]
    assert code == 2, (stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr + stdout
    assert PASSWORD not in stderr + stdout
    assert lines[0].startswith("payql: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_a_command_on_an_empty_database_says_to_migrate(tmp_path: Path, command: tuple[str, ...]) -> None:
    # given a SQLite file with no tables
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    (tmp_path / "empty.db").touch()

    # when a command runs on it, then it says to migrate
    assert_one_line(payql(*command, env=_env(url), cwd=tmp_path), "is not migrated (no tables): run payql migrate")


def test_a_command_on_a_missing_sqlite_file_says_to_migrate_and_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"

    assert_one_line(payql("ledger", "check", env=_env(url), cwd=tmp_path), "not migrated (no tables)")
    assert not (tmp_path / "absent.db").exists()


def test_a_database_behind_head_names_both_revisions(tmp_path: Path) -> None:
    # given a database migrated to 0007 only
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0007")

    # when reconcile runs, then it names where the database is and where it should be
    line = assert_one_line(payql("reconcile", env=_env(url), cwd=tmp_path))
    assert line.endswith(f"is not migrated (at 0007, head is {head_revision()}): run payql migrate"), line

    # and after `payql migrate` the same command runs
    assert payql("migrate", env=_env(url), cwd=tmp_path).returncode == 0
    assert payql("ledger", "check", env=_env(url), cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("command", [("migrate",), ("ledger", "check"), ("demo",), ("serve",)], ids=" ".join)
def test_a_sqlite_file_in_a_missing_directory_is_unreachable(tmp_path: Path, command: tuple[str, ...]) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'payql.db'}"

    assert_one_line(payql(*command, env=_env(url), cwd=tmp_path), "is unreachable: its directory", "does not exist")


def test_commands_without_a_database_still_run_on_an_unreachable_one(tmp_path: Path) -> None:
    url = f"postgresql://payql:{PASSWORD}@127.0.0.1:{free_port()}/payql"

    assert payql("schema", env=_env(url), cwd=tmp_path).returncode == 0
    assert payql("token", "--sub", "alice", env=_env(url), cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("command", [("migrate",), ("reconcile",), ("payouts", "run"), ("serve",)], ids=" ".join)
def test_a_closed_postgresql_port_is_unreachable_and_the_password_is_hidden(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # given a PostgreSQL URL with a password, on a port where nothing listens
    port = free_port()
    url = f"postgresql://payql:{PASSWORD}@127.0.0.1:{port}/payql"

    line = assert_one_line(payql(*command, env=_env(url), cwd=tmp_path), "is unreachable: connection refused")
    assert f"postgresql://payql:***@127.0.0.1:{port}/payql (password hidden)" in line


@pytest.mark.skipif(POSTGRES_URL is None, reason="needs TEST_POSTGRES_URL")
def test_a_bad_port_of_the_test_postgresql_server(tmp_path: Path) -> None:
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL).set(port=free_port(), password=PASSWORD).render_as_string(hide_password=False)

    assert_one_line(payql("ledger", "check", env=_env(url), cwd=tmp_path), "is unreachable: connection refused")


@pytest.mark.skipif(POSTGRES_URL is None, reason="needs TEST_POSTGRES_URL")
def test_a_wrong_database_name_on_the_test_postgresql_server(tmp_path: Path) -> None:
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL).set(database="payql_no_such_database").render_as_string(hide_password=False)

    line = assert_one_line(payql("migrate", env=_env(url), cwd=tmp_path), "is unreachable: ")
    assert "payql_no_such_database" in line


def test_a_database_error_while_a_command_runs_is_one_line(tmp_path: Path) -> None:
    # given a database at the head revision that has lost the table `credits expire` reads
    url = f"sqlite:///{tmp_path / 'broken.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE credit_transactions"))
        connection.execute(text("DROP TABLE credit_lots"))
    engine.dispose()

    # when the command runs (after its warnings that both providers are mocks), then the driver's complaint is one
    # line, not a traceback
    result = payql("credits", "expire", env=_env(url), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    *warnings, last = result.stderr.splitlines()
    assert all(line.startswith("MOCK MODE: ") for line in warnings), result.stderr
    assert last.startswith("payql: the database at ")
    assert "no such table: credit_lots" in last

"""Real payql processes for the tests that need them: crash recovery (a server killed mid-request) and the races
between two servers sharing one database.

`Server` runs `payql serve` (uvicorn, one worker unless `workers` asks for more) on a free port in its own process,
with the environment a test gives it and nothing inherited from the developer's shell or `.env`; `HttpApi` speaks
GraphQL to it with real JWTs and quacks like `support.Api`, so `support.User` and the scenario steps in `flows.py`
work against it unchanged. `payql()` runs another console command (reconcile, payouts run) the same way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from conftest import TEST_SECRET
from support import User

from payql.auth import issue_token
from payql.settings import Settings

PAYQL = str(Path(sys.executable).with_name("payql"))
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_env(values: dict[str, str]) -> dict[str, str]:
    """A clean environment: the interpreter's PATH and the given settings, no PAYQL_* or provider keys of the
    caller's."""
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT"}}
    env.update(values)
    return env


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    """What a test server runs with: its database, the test secret, warnings only, a rate limit out of reach."""
    return {
        "DATABASE_URL": database_url,
        "PAYQL_ENV": "test",
        "JWT_SECRET": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT": "10000/minute",
        **extra,
    }


def payql(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a `payql` command in its own process; its output is returned, never raised."""
    return subprocess.run(  # noqa: S603 - our own console script, arguments from the test
        [PAYQL, *args], env=process_env(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


class Server:
    """`payql serve` in a process of its own; `with Server(...) as server:` waits until it answers /healthz."""

    def __init__(self, env: dict[str, str], cwd: Path, name: str = "server", *, workers: int = 1) -> None:
        self.port = free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = env
        self._cwd = cwd
        self.log_path = cwd / f"{name}-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._clients: list[HttpApi] = []

    def api(self, settings: Settings) -> HttpApi:
        """A GraphQL client of this server, closed with it."""
        client = HttpApi(self, settings)
        self._clients.append(client)
        return client

    def __enter__(self) -> Self:
        self.launch()
        return self.wait_ready()

    @property
    def pid(self) -> int:
        return self._process.pid

    def launch(self) -> None:
        """Start the process; `wait_ready` waits for it (several servers start faster launched together)."""
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own console script
                [PAYQL, "serve", "--no-migrate", "--port", str(self.port), "--workers", str(self.workers)],
                env=process_env(self._env),
                cwd=self._cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> Self:
        assert self._process is not None, "launch() first"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"the server exited at start:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the server did not start in {START_TIMEOUT} s:\n{self.log()}")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - uvicorn stops on SIGTERM
                self._process.kill()
                self._process.wait()

    def wait_dead(self, timeout: float = 10) -> int:
        """The exit code of a server that is expected to have died (a crash point)."""
        assert self._process is not None
        return self._process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def servers(count: int, env: dict[str, str], cwd: Path) -> Iterator[list[Server]]:
    """`count` servers on one database, launched together."""
    started = [Server(env, cwd, name=f"server{index}") for index in range(count)]
    with contextlib.ExitStack() as stack:
        for server in started:
            stack.callback(server.stop)
            server.launch()
        yield [server.wait_ready() for server in started]


class HttpApi:
    """GraphQL over real HTTP to a `Server`; the same surface as `support.Api` for `User` and `flows`."""

    def __init__(self, server: Server, settings: Settings) -> None:
        self.server = server
        self.settings = settings
        self._client = httpx.Client(base_url=server.url, timeout=30)

    def close(self) -> None:
        self._client.close()

    def graphql(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self._client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def user(self, sub: str, *roles: str) -> User:
        return User(self, sub, issue_token(self.settings, sub, roles=roles, ttl_seconds=3600))  # type: ignore[arg-type]

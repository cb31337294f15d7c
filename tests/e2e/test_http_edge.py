"""The HTTP edge: bounded and timed request bodies, clients that go away, and the headers of every answer.

Bodies are sent as async generators that count the chunks the server pulls: httpx's ASGITransport hands the app
one chunk per `receive()`, only when the app asks for it, so the count is exactly what the server read.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from conftest import TEST_SECRET
from pydantic import SecretStr
from servers import Server
from support import Api

from payql.app import create_app, services_of
from payql.db import Database
from payql.settings import Settings
from payql.webhooks.routes import MAX_BODY

CHUNK = 10_000
QUERY = {"query": "{ packages { code } }"}
SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
LIMITED_ROUTES = ["/graphql", "/webhooks/yookassa"]


class CountingBody:
    """A request body of `chunks` chunks of CHUNK bytes, produced only when the server pulls them."""

    def __init__(self, chunks: int, *, stall_after: int | None = None) -> None:
        self.chunks = chunks
        self.pulled = 0
        self.stall_after = stall_after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            if self.pulled == self.stall_after:
                await anyio.sleep(10)  # a client that trickles: far past the body timeout the test sets
            self.pulled += 1
            yield b" " * CHUNK


def limit_of(api: Api, route: str) -> int:
    return api.settings.graphql_max_bytes if route == "/graphql" else MAX_BODY


def code_of(response: httpx.Response) -> str:
    body = response.json()
    code: str = body["errors"][0]["extensions"]["code"] if "errors" in body else body["code"]
    return code


@pytest.mark.parametrize("route", LIMITED_ROUTES)
def test_a_body_declared_over_the_limit_is_refused_before_any_of_it_is_read(api: Api, route: str) -> None:
    limit = limit_of(api, route)
    body = CountingBody(limit // CHUNK + 2)

    response = api.request(
        "POST",
        route,
        content=body,
        headers={"Content-Type": "application/json", "Content-Length": str(body.chunks * CHUNK)},
    )

    assert response.status_code == 413
    assert code_of(response) == "PAYLOAD_TOO_LARGE"
    assert body.pulled == 0


@pytest.mark.parametrize("route", LIMITED_ROUTES)
def test_a_body_without_a_length_is_read_only_up_to_the_limit(api: Api, route: str) -> None:
    limit = limit_of(api, route)
    body = CountingBody(limit // CHUNK * 10)  # ten times the limit, chunked (no Content-Length)

    response = api.request("POST", route, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert code_of(response) == "PAYLOAD_TOO_LARGE"
    assert body.pulled == limit // CHUNK + 1  # the chunk that crossed the limit, and not one more
    assert response.headers["connection"] == "close"  # the rest of the body is not waited for


def test_a_body_within_the_limit_without_a_length_is_answered(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ packages '
        yield b'{ code } }"}'

    response = api.request("POST", "/graphql", content=chunks(), headers={"Content-Type": "application/json"})

    assert response.status_code == 200
    assert response.json()["data"]["packages"][0]["code"] == "trial"


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "1" * 5000])
def test_a_content_length_that_is_not_a_size_is_refused(api: Api, length: str) -> None:
    body = CountingBody(1)
    response = api.request(
        "POST",
        "/graphql",
        content=body,
        headers={"Content-Type": "application/json", "Content-Length": length},
    )

    assert response.status_code == (413 if length.isdigit() else 400)
    assert code_of(response) == ("PAYLOAD_TOO_LARGE" if length.isdigit() else "BAD_REQUEST")
    assert body.pulled == 0


def test_refused_graphql_bodies_count_against_the_callers_rate_limit(settings: Settings, db: Database) -> None:
    limited = settings.model_copy(update={"rate_limit": "3/minute"})
    oversized = b" " * (limited.graphql_max_bytes + 1)
    with Api(create_app(limited, db=db), limited) as api:
        refusals = [
            api.request("POST", "/graphql", content=body, headers={"Content-Type": "application/json"})
            for body in (oversized, b"{not json", oversized)
        ]
        body = CountingBody(limited.graphql_max_bytes // CHUNK + 2)
        limited_out = api.request("POST", "/graphql", content=body, headers={"Content-Type": "application/json"})
        honest = api.request("POST", "/graphql", json=QUERY)

    assert [r.status_code for r in refusals] == [413, 400, 413]
    assert limited_out.status_code == 429
    assert code_of(limited_out) == "RATE_LIMITED"
    assert body.pulled == 0  # a caller over its limit costs no more than its headers
    assert honest.status_code == 429  # the same address: the refusals counted


def test_oversized_webhook_deliveries_count_as_refusals(api: Api) -> None:
    declared = {"Content-Length": str(MAX_BODY + 1)}
    answers = []
    for _ in range(31):
        body = CountingBody(1)
        answers.append(api.request("POST", "/webhooks/yookassa", content=body, headers=declared))

    assert [a.status_code for a in answers] == [413] * 30 + [429]


@pytest.mark.parametrize("route", LIMITED_ROUTES)
def test_a_body_that_trickles_in_is_answered_408_and_logged_at_info(
    settings: Settings, db: Database, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    impatient = settings.model_copy(update={"body_read_timeout_ms": 200})
    body = CountingBody(3, stall_after=1)
    with Api(create_app(impatient, db=db), impatient) as api, caplog.at_level(logging.INFO):
        response = api.request("POST", route, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 408
    assert code_of(response) == "REQUEST_TIMEOUT"
    assert body.pulled == 1
    timeouts = [r for r in caplog.records if "200 ms" in r.getMessage()]
    assert [r.levelname for r in timeouts] == ["INFO"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_client_that_goes_away_mid_body_is_logged_at_info_and_not_counted_as_a_server_error(
    database_url: str, tmp_path: Path
) -> None:
    # a real server: the traceback and the 500 came from uvicorn and the metrics around the app
    env = {"DATABASE_URL": database_url, "PAYQL_ENV": "test", "JWT_SECRET": TEST_SECRET, "LOG_LEVEL": "INFO"}
    with Server(env, tmp_path) as server:
        for route in LIMITED_ROUTES:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
                raw.sendall(
                    f"POST {route} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                    "Content-Length: 5000\r\n\r\n".encode()
                    + b'{"query": "{ pack'
                )  # and the client goes away, 4,983 bytes short
        metrics = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and metrics.count('status="499"') < len(LIMITED_ROUTES):
            metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
            time.sleep(0.1)
        log = server.log_path.read_text(errors="replace")

    for route in LIMITED_ROUTES:
        assert f'payql_http_requests_total{{method="POST",route="{route}",status="499"}} 1.0' in metrics
    assert 'status="500"' not in metrics
    assert "Traceback" not in log
    assert not re.search(r"\bERROR\b", log), log
    gone = [line for line in log.splitlines() if "went away" in line]
    assert len(gone) == len(LIMITED_ROUTES)
    assert all(" INFO " in line for line in gone)


API_ROUTES = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/graphql"),
    ("GET", "/graphql"),
    ("POST", "/webhooks/stripe"),
    ("POST", "/webhooks/yookassa"),
]


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_api_answers_are_not_sniffed_nor_stored(api: Api, method: str, path: str) -> None:
    response = api.request(method, path, json=QUERY if method == "POST" else None)

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert SAFE_ID.fullmatch(response.headers["x-request-id"])


def test_every_answer_is_not_sniffed_and_has_a_request_id(api: Api) -> None:
    missing = api.request("GET", "/nowhere", headers={"X-Request-ID": "r-404"})

    assert missing.status_code == 404
    assert missing.headers["x-content-type-options"] == "nosniff"
    assert missing.headers["x-request-id"] == "r-404"
    assert "cache-control" not in missing.headers


def test_an_unexpected_exception_still_answers_with_the_edge_headers(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> bytes:
        raise RuntimeError("boom")

    monkeypatch.setattr("payql.metrics.generate_latest", broken)
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)

    async def scrape() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/metrics", headers={"X-Request-ID": "r-500"})

    response = anyio.run(scrape)

    assert response.status_code == 500
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"] == "r-500"
    assert "boom" not in response.text


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc.DEF_1-2", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("a b", False),
        ("<script>", False),
        ("caf\u00e9", False),  # a letter, but not a safe character
        ("", False),
    ],
)
def test_a_clients_request_id_is_kept_only_when_short_and_safe(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, given: str, kept: bool
) -> None:
    def broken() -> list[object]:
        raise RuntimeError("boom")

    # an unexpected error is masked, logged with the request id, and shows it in `extensions.requestId`
    monkeypatch.setattr(services_of(api.app).catalogue, "all", broken)
    with caplog.at_level(logging.ERROR, logger="payql.graphql"):
        response = api.request("POST", "/graphql", json=QUERY, headers={"X-Request-ID": given.encode("latin-1")})

    chosen = response.headers["x-request-id"]
    assert (chosen == given) is kept
    assert SAFE_ID.fullmatch(chosen)
    assert response.json()["errors"][0]["extensions"]["requestId"] == chosen
    assert any(chosen in record.getMessage() for record in caplog.records)


def test_metrics_need_the_metrics_token_when_one_is_set(settings: Settings, db: Database) -> None:
    token = "metrics-" + "s3cret" * 6
    guarded = settings.model_copy(update={"metrics_token": SecretStr(token)})
    with Api(create_app(guarded, db=db), guarded) as api:
        anonymous = api.request("GET", "/metrics")
        wrong = api.request("GET", "/metrics", headers={"Authorization": "Bearer not-the-token"})
        user = api.request("GET", "/metrics", headers={"Authorization": f"Bearer {api.token('u1', 'admin')}"})
        right = api.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})

    for refused in (anonymous, wrong, user):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "payql_http" not in refused.text
    assert right.status_code == 200
    assert "payql_http_requests_total" in right.text

"""GraphQL over HTTP and the operational routes."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from servers import Server, server_env
from sqlalchemy import text
from support import Api

from payql.app import create_app
from payql.db import Database
from payql.settings import Settings

QUERY = "{ packages { code } }"


def test_health_and_readiness(api: Api) -> None:
    assert api.request("GET", "/healthz").json() == {"status": "ok"}
    assert api.request("GET", "/readyz").status_code == 200


def test_readiness_fails_when_the_database_is_down(settings: Settings, tmp_path: object) -> None:
    broken = Database("sqlite:////nonexistent-dir/for-sure/payql.db")
    app = create_app(settings, db=broken)
    # no lifespan: the catalogue sync would fail on this database, which is the point
    import anyio  # noqa: PLC0415
    import httpx  # noqa: PLC0415

    async def probe() -> tuple[int, int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return (await client.get("/readyz")).status_code, (await client.get("/healthz")).status_code

    assert anyio.run(probe) == (503, 200)
    broken.dispose()


def test_get_serves_queries_and_graphiql_but_not_mutations(api: Api) -> None:
    got = api.request("GET", "/graphql", params={"query": QUERY})
    assert got.status_code == 200
    assert got.json()["data"]["packages"][0]["code"] == "trial"

    ide = api.request("GET", "/graphql", headers={"Accept": "text/html"})
    assert ide.status_code == 200
    assert "graphiql" in ide.text.lower()

    mutation = api.request(
        "GET", "/graphql", params={"query": 'mutation { confirm(paymentId: "x") { errors { code } } }'}
    )
    assert mutation.status_code == 405
    assert mutation.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'[{"query": "{ packages { code } }"}]', "application/json", 400, "BATCHING_NOT_SUPPORTED"),
        (b"{not json", "application/json", 400, "BAD_REQUEST"),
        (b'{"variables": {}}', "application/json", 400, "BAD_REQUEST"),
        (b'{"query": "{ packages { code } }", "variables": [1]}', "application/json", 400, "BAD_REQUEST"),
        (b'"a string"', "application/json", 400, "BAD_REQUEST"),
        (b"query=x", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
def test_malformed_requests_get_a_graphql_error_body(
    api: Api, body: bytes, content_type: str, status: int, code: str
) -> None:
    response = api.request("POST", "/graphql", content=body, headers={"Content-Type": content_type})

    assert response.status_code == status
    assert response.json()["errors"][0]["extensions"]["code"] == code


def test_oversized_documents_are_refused(api: Api) -> None:
    padding = " " * (api.settings.graphql_max_bytes + 1)
    response = api.request("POST", "/graphql", json={"query": "{ packages { code } }" + padding})

    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


def test_graphql_response_media_type_answers_400_when_execution_never_started(api: Api) -> None:
    accept = {"Accept": "application/graphql-response+json"}
    invalid = api.request("POST", "/graphql", json={"query": "{ nope }"}, headers=accept)
    legacy = api.request("POST", "/graphql", json={"query": "{ nope }"})

    assert invalid.status_code == 400
    assert invalid.headers["content-type"].startswith("application/graphql-response+json")
    assert "data" not in invalid.json()
    assert invalid.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert legacy.status_code == 200


def test_depth_and_alias_limits(api: Api) -> None:
    aliases = " ".join(f"a{i}: packages {{ code }}" for i in range(api.settings.graphql_max_aliases + 1))
    body = api.graphql("{ " + aliases + " }")
    assert "errors" in body
    assert "aliases" in body["errors"][0]["message"]

    deep = "{ payments { edges { node { " + "enroll { payment { " * 6 + "id" + " } }" * 6 + " } } } }"
    body = api.graphql(deep, token=api.token("u"))
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]


def test_unexpected_errors_are_masked_and_logged_with_the_request_id(
    api: Api, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    user = api.user("u1")
    user.data("{ payments { totalCount } }")
    with db.engine.begin() as connection:  # break the database under the app's feet
        connection.execute(text("ALTER TABLE payments RENAME TO payments_gone"))
    try:
        with caplog.at_level(logging.ERROR, logger="payql.graphql"):
            response = api.request(
                "POST",
                "/graphql",
                json={"query": "{ payments { totalCount } }"},
                headers={"Authorization": f"Bearer {user.token}", "X-Request-ID": "req-123"},
            )
    finally:
        with db.engine.begin() as connection:
            connection.execute(text("ALTER TABLE payments_gone RENAME TO payments"))

    error = response.json()["errors"][0]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-123"}
    assert not re.search(r"(?i)select|payments_gone|sqlite|psycopg|traceback", response.text)
    assert response.headers["x-request-id"] == "req-123"
    assert any("req-123" in record.getMessage() for record in caplog.records)


def test_metrics_are_exposed(api: Api) -> None:
    api.request("GET", "/healthz")
    metrics = api.request("GET", "/metrics")

    assert metrics.status_code == 200
    assert 'payql_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text


def test_webhooks_are_refused_in_mock_mode(api: Api) -> None:
    for route in ("/webhooks/stripe", "/webhooks/yookassa"):
        response = api.request("POST", route, content=b'{"type": "payment_intent.succeeded"}')
        assert response.status_code == 400
        assert "mock mode" in response.json()["error"]


def test_the_query_cost_limit_weighs_lists_by_their_page_size(settings: Settings, db: Database) -> None:
    limited = settings.model_copy(update={"graphql_max_cost": 200})
    with Api(create_app(limited, db=db), limited) as api:
        token = api.token("u1")
        page = "edges { node { id status amount { amount currency } refunds(first: 2) { id } } }"
        small = api.graphql("{ payments(first: 10) { " + page + " } }", token=token)
        big = api.graphql("{ payments(first: 100) { " + page + " } }", token=token)
        by_variable = api.graphql("query($n: Int!) { payments(first: $n) { " + page + " } }", {"n": 100}, token=token)
        small_by_variable = api.graphql(
            "query($n: Int!) { payments(first: $n) { " + page + " } }", {"n": 5}, token=token
        )

    assert "errors" not in small
    (error,) = big["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert "exceeds the maximum of 200" in error["message"]
    assert "data" not in big
    assert by_variable["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"  # variables count at their value
    assert "errors" not in small_by_variable


def test_callers_are_rate_limited_per_user_and_per_address(settings: Settings, db: Database) -> None:
    limited = settings.model_copy(update={"rate_limit": "3/minute"})
    with Api(create_app(limited, db=db), limited) as api:
        alice, bob = api.token("alice"), api.token("bob")
        for _ in range(3):
            assert "errors" not in api.graphql("{ payments { totalCount } }", token=alice)
        refused = api.request(
            "POST", "/graphql", json={"query": "{ packages { code } }"}, headers={"Authorization": f"Bearer {alice}"}
        )
        assert "errors" not in api.graphql("{ payments { totalCount } }", token=bob)  # another user has their own
        anonymous = [
            api.request("POST", "/graphql", json={"query": "{ packages { code } }"}).status_code for _ in range(4)
        ]

    assert refused.status_code == 429
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    assert anonymous == [200, 200, 200, 429]


def test_refused_webhook_deliveries_are_rate_limited(api: Api) -> None:
    answers = [api.request("POST", "/webhooks/yookassa", content=b"{}").status_code for _ in range(31)]

    assert answers[:30] == [400] * 30
    assert answers[30] == 429


def test_production_turns_off_introspection_and_graphiql(settings: Settings, db: Database) -> None:
    production = settings.model_copy(update={"payql_env": "production"})
    development = settings

    with Api(create_app(production, db=db), production) as api:
        hidden = api.graphql("{ __schema { queryType { name } } }")
        ide = api.request("GET", "/graphql", headers={"Accept": "text/html"})
        packages = api.graphql("{ packages { code } }")
    with Api(create_app(development, db=db), development) as api:
        shown = api.graphql("{ __schema { queryType { name } } }")

    assert "errors" in hidden
    assert "introspection" in hidden["errors"][0]["message"].lower()
    assert ide.status_code == 404
    assert packages["data"]["packages"]
    assert shown["data"] == {"__schema": {"queryType": {"name": "Query"}}}


def test_several_operations_need_an_operation_name_and_nothing_runs_without_one(api: Api, db: Database) -> None:
    token = api.token("u1")
    document = (
        "query Read { packages { code } } "
        'mutation Book { createEnroll(input: {providerId: "nobody", title: "t", '
        'price: {amount: "1.00", currency: "USD"}}) { errors { code } } }'
    )
    headers = {"Authorization": f"Bearer {token}"}

    refused = api.request("POST", "/graphql", json={"query": document}, headers=headers)
    chosen = api.request("POST", "/graphql", json={"query": document, "operationName": "Read"}, headers=headers)
    unknown = api.request("POST", "/graphql", json={"query": document, "operationName": "Nope"}, headers=headers)

    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "operationName" in refused.json()["errors"][0]["message"]
    assert chosen.status_code == 200
    assert [p["code"] for p in chosen.json()["data"]["packages"]][:1] == ["trial"]
    assert unknown.status_code == 400
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM enrolls")).scalar() == 0


def test_payql_serve_runs_on_the_standard_librarys_event_loop(tmp_path: Path, database_url: str) -> None:
    """Not uvloop, which uvicorn would pick when installed: under load it reads new requests ahead of finishing
    started ones, and the tail latency grew 8-13x (payql/cli.py). uvloop's extension is never loaded."""
    with Server(server_env(database_url), tmp_path) as server:
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
        libraries = Path(f"/proc/{server.pid}/maps").read_text()  # every shared object the process has loaded
        assert "/httptools/" in libraries  # uvicorn's compiled HTTP parser: compiled extensions are listed here
        assert "/uvloop/" not in libraries


def _tcp_sockets(port: int, state: str) -> set[int]:
    """Inodes of this machine's TCP sockets on local `port` in `state` (kernel codes: 01 established, 0A listen)."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(int(fields[9]))
    return inodes


def _held_by(pid: int) -> set[int]:
    """Inodes of the sockets process `pid` holds open."""
    held: set[int] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            target = str(fd.readlink())
            if target.startswith("socket:["):
                held.add(int(target[8:-1]))
    return held


def _listeners(server: Server) -> dict[int, set[int]]:
    """The server's workers that hold a listening socket on its port, with the inodes of those sockets."""
    listening = _tcp_sockets(server.port, "0A")
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    held = {int(pid): _held_by(int(pid)) & listening for pid in children}
    return {pid: sockets for pid, sockets in held.items() if sockets}


def _listeners_when(server: Server, ready: Callable[[dict[int, set[int]]], bool]) -> dict[int, set[int]]:
    """`_listeners` once `ready` holds of them (a worker may still be starting), or after 30 s as they are."""
    deadline = time.monotonic() + 30
    while not ready(found := _listeners(server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT balancing and /proc are Linux's")
def test_payql_serve_workers_each_listen_on_their_own_socket(tmp_path: Path, database_url: str) -> None:
    """`payql serve --workers 2`: each worker has its own listening socket on the port, and the kernel spreads new
    connections over them. With uvicorn's one shared socket, an idle worker's loop took every waiting connection:
    32 of 32 of a burst, in one run of three (payql/serving.py)."""
    with Server(server_env(database_url), tmp_path, workers=2) as server:
        serving = _listeners_when(server, lambda found: len(found) == 2)  # /healthz answered from the first up
        assert len(serving) == 2
        first, second = serving.values()
        assert len(first) == len(second) == 1
        assert first != second  # not one socket shared by both
        assert _held_by(server.pid) & _tcp_sockets(server.port, "0A") == set()  # the parent holds none

        burst = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(64)]
        try:
            for connection in burst:
                connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
            for connection in burst:
                assert connection.recv(4096).startswith(b"HTTP/1.1 200")
            established = _tcp_sockets(server.port, "01")
            spread = sorted(len(_held_by(pid) & established) for pid in serving)
        finally:
            for connection in burst:
                connection.close()
        assert sum(spread) == 64
        assert spread[0] >= 8  # a hash of each connection's ports: below 8 of 64 has odds of about 1 in 10^11


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT balancing and /proc are Linux's")
def test_a_worker_that_dies_is_replaced_by_one_with_its_own_socket(tmp_path: Path, database_url: str) -> None:
    """uvicorn still supervises the workers: one killed is replaced, and the new one binds its own socket."""
    with Server(server_env(database_url), tmp_path, workers=2) as server:
        before = _listeners_when(server, lambda found: len(found) == 2)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        after = _listeners_when(server, lambda found: len(found) == 2 and victim not in found)
        assert victim not in after
        assert len(after) == 2
        first, second = after.values()
        assert first != second
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}

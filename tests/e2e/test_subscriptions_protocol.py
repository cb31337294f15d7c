"""The graphql-transport-ws protocol's corner cases, in process (Starlette's TestClient speaks WebSocket to the app),
and the fan-out of `payql.live` itself: a commit made outside any request (as a job or reconcile makes one) wakes
the subscribers, a rolled-back one wakes no one. The fan-out tests run on PostgreSQL too when TEST_POSTGRES_URL is
set (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator
from typing import Any

import documents as doc
import pytest
from conftest import make_settings
from flows import intent
from live_client import PAYMENT_UPDATED
from sqlalchemy import event
from starlette.websockets import WebSocketDisconnect
from support import Api

from payql.app import create_app
from payql.auth import issue_token
from payql.db import Database
from payql.live import Live, install_bus, keys_of
from payql.models import Payment, Refund
from payql.settings import Settings

with warnings.catch_warnings():  # Starlette would have httpx2 for its TestClient; httpx serves it still
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient, WebSocketTestSession

PROTOCOL = ["graphql-transport-ws"]


@pytest.fixture
def client(database_url: str, db: Database) -> Iterator[tuple[TestClient, Settings]]:
    settings = make_settings(
        database_url,
        subscription_init_timeout_ms=300,
        subscription_max_operations=2,
        subscription_max_message_bytes=4096,
    )
    with TestClient(create_app(settings, db=db)) as test_client:
        yield test_client, settings


def closed_with(ws: WebSocketTestSession) -> tuple[int, str]:
    """The close code and reason the app ended the connection with."""
    for _ in range(100):  # skip what it sent before closing
        try:
            ws.receive_json()
        except WebSocketDisconnect as ended:
            return ended.code, ended.reason
    raise AssertionError("the connection was not closed")


def acked(ws: WebSocketTestSession, settings: Settings, sub: str = "proto-user") -> None:
    ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {issue_token(settings, sub)}"}})
    assert ws.receive_json() == {"type": "connection_ack"}


def subscribe(ws: WebSocketTestSession, op_id: str, query: str = PAYMENT_UPDATED, **variables: Any) -> None:
    ws.send_json({"type": "subscribe", "id": op_id, "payload": {"query": query, "variables": variables}})


def test_without_the_subprotocol_the_connection_closes_4406(client: tuple[TestClient, Settings]) -> None:
    with client[0].websocket_connect("/graphql") as ws:
        assert closed_with(ws) == (4406, "Subprotocol not acceptable")


def test_connection_init_must_come_in_time(client: tuple[TestClient, Settings]) -> None:
    with client[0].websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        assert closed_with(ws) == (4408, "Connection initialisation timeout")


def test_subscribe_before_the_ack_closes_4401(client: tuple[TestClient, Settings]) -> None:
    with client[0].websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        subscribe(ws, "1", id="pay_x")
        assert closed_with(ws) == (4401, "Unauthorized")


def test_a_second_connection_init_closes_4429(client: tuple[TestClient, Settings]) -> None:
    test_client, settings = client
    with test_client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        acked(ws, settings)
        ws.send_json({"type": "connection_init", "payload": {}})
        assert closed_with(ws) == (4429, "Too many initialisation requests")


@pytest.mark.parametrize(
    "message",
    ["not json", json.dumps([1, 2]), json.dumps({"type": "hello"}), json.dumps({"type": "subscribe", "id": "1"})],
    ids=["not-json", "not-an-object", "unknown-type", "no-payload"],
)
def test_a_message_outside_the_protocol_closes_4400(client: tuple[TestClient, Settings], message: str) -> None:
    test_client, settings = client
    with test_client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        acked(ws, settings)
        ws.send_text(message)
        code, _reason = closed_with(ws)
        assert code == 4400


def test_a_message_over_the_limit_closes_1009_even_behind_another_server(client: tuple[TestClient, Settings]) -> None:
    test_client, settings = client  # no uvicorn here to refuse it first: the app does
    with test_client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        acked(ws, settings)
        subscribe(ws, "1", id="p" * 5000)
        assert closed_with(ws) == (1009, "message larger than 4096 bytes")


def test_ids_are_unique_and_operations_per_connection_limited(
    client: tuple[TestClient, Settings], db: Database
) -> None:
    test_client, settings = client
    api_token = issue_token(settings, "proto-owner")
    answer = test_client.post(
        "/graphql",
        json={"query": doc.CREATE_INTENT, "variables": {"input": {"packageCode": "trial"}}},
        headers={"Authorization": f"Bearer {api_token}"},
    ).json()
    payment_id = answer["data"]["createIntent"]["payment"]["id"]
    with test_client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        acked(ws, settings, "proto-owner")
        for op_id in ("a", "b"):
            subscribe(ws, op_id, id=payment_id)
            assert ws.receive_json()["type"] == "next"
        subscribe(ws, "c", id=payment_id)
        refused = ws.receive_json()
        assert (refused["id"], refused["type"]) == ("c", "error")
        assert refused["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
        ws.send_json({"type": "complete", "id": "a"})  # a completed operation frees its place
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        subscribe(ws, "c", id=payment_id)
        assert ws.receive_json()["id"] == "c"
        subscribe(ws, "b", id=payment_id)
        assert closed_with(ws) == (4409, "Subscriber for b already exists")


def test_queries_and_invalid_documents_are_errors_of_the_operation(client: tuple[TestClient, Settings]) -> None:
    test_client, settings = client
    with test_client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        acked(ws, settings)
        subscribe(ws, "q", "{ packages { code } }")
        answer = ws.receive_json()
        assert (answer["type"], answer["payload"][0]["extensions"]["code"]) == ("error", "BAD_REQUEST")
        subscribe(ws, "v", 'subscription { paymentUpdated(id: "x") { nope } }')
        answer = ws.receive_json()
        assert (answer["type"], answer["payload"][0]["extensions"]["code"]) == ("error", "GRAPHQL_VALIDATION_FAILED")
        subscribe(ws, "two", 'subscription { a: paymentUpdated(id: "x") { id } b: enrollUpdated(id: "y") { id } }')
        answer = ws.receive_json()
        assert (answer["type"], answer["payload"][0]["extensions"]["code"]) == ("error", "GRAPHQL_VALIDATION_FAILED")


def test_a_commit_outside_any_request_reaches_the_subscriber(client: tuple[TestClient, Settings], db: Database) -> None:
    test_client, settings = client
    owner_token = issue_token(settings, "proto-job")
    answer = test_client.post(
        "/graphql",
        json={"query": doc.CREATE_INTENT, "variables": {"input": {"packageCode": "trial"}}},
        headers={"Authorization": f"Bearer {owner_token}"},
    ).json()
    payment_id = answer["data"]["createIntent"]["payment"]["id"]
    with test_client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        acked(ws, settings, "proto-job")
        subscribe(ws, "1", "subscription($id: ID!) { paymentUpdated(id: $id) { id failureMessage } }", id=payment_id)
        assert ws.receive_json()["payload"]["data"]["paymentUpdated"]["failureMessage"] is None
        with db.uow() as uow:  # as a job or `payql reconcile` writes: its own unit of work, no request
            payment = uow.session.get(Payment, payment_id)
            assert payment is not None
            payment.failure_message = "card declined"
            uow.commit()
        update = ws.receive_json()
        assert update["payload"]["data"]["paymentUpdated"]["failureMessage"] == "card declined"


LIVE_REDIS = "redis://127.0.0.1:6379/0"  # the machine's Redis, as test_redis.py uses it (.ci/run starts it)


@pytest.mark.parametrize("bus", ["database", "redis"])
def test_only_committed_changes_wake_the_watchers(
    api: Api, settings: Settings, db: Database, bus: str, database_url: str
) -> None:
    """On the database's own bus (in process on SQLite, LISTEN/NOTIFY on PostgreSQL) and on Redis."""
    database = database_url
    payment_id = intent(api.user("live-unit"), packageCode="trial")["payment"]["id"]
    plain = settings
    if bus == "redis":
        settings = settings.model_copy(update={"redis_url": LIVE_REDIS})

    def change(message: str, *, commit: bool) -> None:
        with db.uow() as uow:
            payment = uow.session.get(Payment, payment_id)
            assert payment is not None
            payment.failure_message = message
            uow.session.flush()
            if commit:
                uow.commit()

    async def scenario() -> None:
        live = Live(settings)
        assert live.backend == ("redis" if bus == "redis" else "postgres" if "postgres" in database else "local")
        await live.start()
        try:
            watch = live.watch({("payment", payment_id)})
            other = live.watch({("payment", "pay_other")})
            await asyncio.wait_for(live.listening.wait(), 10)  # from the first subscription on
            if live.backend != "local":  # then every watcher reads again: nothing committed meanwhile is missed
                await asyncio.wait_for(watch.changed.wait(), 5)
            watch.changed.clear()
            other.changed.clear()
            await asyncio.to_thread(change, "rolled back", commit=False)
            await asyncio.sleep(0.3)
            assert not watch.changed.is_set(), "a rolled-back change woke a watcher"
            await asyncio.to_thread(change, "committed", commit=True)
            await asyncio.wait_for(watch.changed.wait(), 5)
            if live.backend != "local":  # on SQLite a commit also moves the file's data_version, which wakes all
                assert not other.changed.is_set()
        finally:
            await live.stop()

    install_bus(settings)  # as `bootstrap` does in every process on this database
    try:
        asyncio.run(scenario())
    finally:
        install_bus(plain)  # this process's later tests on the same database use its own bus


def test_what_a_change_wakes() -> None:
    payment = Payment(id="pay_1", enroll_id="enr_1")
    assert keys_of(payment) == [("payment", "pay_1"), ("enroll", "enr_1")]
    assert keys_of(Refund(id="ref_1", payment_id="pay_1")) == [("payment", "pay_1")]
    assert keys_of(object()) == []


def test_the_application_transaction_sends_no_notify_and_the_note_follows_the_commit(
    api: Api, db: Database, database_url: str
) -> None:
    """A transaction that NOTIFYs holds PostgreSQL's database-wide notification lock through its commit: the note
    is sent after the commit, from the notifier's own connection, never by the application's statements."""
    payment_id = intent(api.user("live-order"), packageCode="trial")["payment"]["id"]
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.uow() as uow:
            payment = uow.session.get(Payment, payment_id)
            assert payment is not None
            payment.failure_message = "changed"
            uow.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)

    assert any("UPDATE payments" in statement for statement in statements)
    assert not any("notify" in statement.lower() for statement in statements)

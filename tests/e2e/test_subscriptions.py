"""Subscriptions over a real socket: `payql serve` (uvicorn) in its own process, a graphql-transport-ws client
(`websockets`), changes made through the public API (a mutation, a signed Stripe webhook) reaching the subscriber.

One server is shared by the module (SQLite, the in-process fan-out); the webhook test starts its own with the
Stripe fake. The protocol's corner cases run in process (test_subscriptions_protocol.py), and two servers on
PostgreSQL in test_subscriptions_postgres.py.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import documents as doc
import httpx
import pytest
from conftest import STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, make_settings
from fakes.stripe_api import FakeStripe
from flows import book, intent
from live_client import ENROLL_UPDATED, PAYMENT_UPDATED, LiveClient
from servers import HttpApi, Server, server_env, servers
from websockets.exceptions import ConnectionClosed

from payql.auth import issue_token
from payql.db import Database
from payql.models import Payment
from payql.settings import Settings

MAX_CONNECTIONS = 3


def live_env(database_url: str, **extra: str) -> dict[str, str]:
    return server_env(database_url, SUBSCRIPTION_MAX_CONNECTIONS=str(MAX_CONNECTIONS), **extra)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("live")
    shutil.copyfile(sqlite_template, folder / "payql.db")
    return f"sqlite:///{folder / 'payql.db'}", folder


@pytest.fixture(scope="module")
def server(database: tuple[str, Path]) -> Iterator[Server]:
    url, folder = database
    with Server(live_env(url), folder, name="live") as started:
        yield started


@pytest.fixture(scope="module")
def settings(database: tuple[str, Path]) -> Settings:
    return make_settings(database[0])


@pytest.fixture
def http(server: Server, settings: Settings) -> HttpApi:
    return server.api(settings)


def token(settings: Settings, sub: str, ttl: int = 600) -> str:
    return issue_token(settings, sub, ttl_seconds=ttl)


def next_payload(client: LiveClient, op_id: str = "1") -> dict[str, Any]:
    message = client.recv()
    assert message["type"] == "next", message
    assert message["id"] == op_id
    data: dict[str, Any] = message["payload"]["data"]
    return data


def test_a_payment_sends_its_state_then_the_change_a_mutation_commits(
    server: Server, http: HttpApi, settings: Settings
) -> None:
    alice = http.user("sub-alice")
    payment = intent(alice, packageCode="standard")["payment"]
    with LiveClient(server.url) as live:
        assert live.init(alice.token) == {"type": "connection_ack"}
        live.subscribe("1", PAYMENT_UPDATED, id=payment["id"])
        assert next_payload(live)["paymentUpdated"]["status"] == "PENDING"

        started = time.monotonic()
        alice.ok(doc.CONFIRM, paymentId=payment["id"])
        update = next_payload(live)["paymentUpdated"]
        latency = time.monotonic() - started
        assert update == {"id": payment["id"], "status": "SUCCEEDED", "capturedAmount": {"amount": "100.00"}}
        # the mutation's own round trip is in `latency`: the update came as the commit's push, not by polling
        assert latency < 5

        # a commit that changes nothing the subscription shows sends nothing
        alice.data(doc.PAYMENT, id=payment["id"])
        with pytest.raises(TimeoutError):
            live.recv(timeout=0.5)


def test_an_enroll_subscription_sees_its_payment_change(server: Server, http: HttpApi) -> None:
    client, mentor = http.user("sub-client"), http.user("sub-mentor", "provider")
    enroll_id = book(client, mentor)
    with LiveClient(server.url) as live:
        live.init(mentor.token)
        live.subscribe("e", ENROLL_UPDATED, id=enroll_id)
        first = next_payload(live, "e")["enrollUpdated"]
        assert first == {"id": enroll_id, "status": "PENDING", "payment": None}

        payment = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="MANUAL")["payment"]
        assert next_payload(live, "e")["enrollUpdated"]["payment"] == {"id": payment["id"], "status": "PENDING"}
        client.ok(doc.CONFIRM, paymentId=payment["id"])
        held = next_payload(live, "e")["enrollUpdated"]
        assert held == {"id": enroll_id, "status": "PENDING", "payment": {"id": payment["id"], "status": "AUTHORIZED"}}
        mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
        assert next_payload(live, "e")["enrollUpdated"]["status"] == "CONFIRMED"


def test_a_commit_by_another_process_reaches_the_subscriber(
    server: Server, http: HttpApi, database: tuple[str, Path]
) -> None:
    """As `payql reconcile` or a job commits on SQLite: in a process of its own (this test's), with no Redis."""
    owner = http.user("sub-reconciled")
    payment_id = intent(owner, packageCode="trial")["payment"]["id"]
    db = Database(database[0])
    try:
        with LiveClient(server.url) as live:
            live.init(owner.token)
            live.subscribe("1", "subscription($id: ID!) { paymentUpdated(id: $id) { failureMessage } }", id=payment_id)
            assert next_payload(live)["paymentUpdated"] == {"failureMessage": None}
            with db.uow() as uow:
                payment = uow.session.get(Payment, payment_id)
                assert payment is not None
                payment.failure_message = "found by reconcile"
                uow.commit()
            assert next_payload(live)["paymentUpdated"] == {"failureMessage": "found by reconcile"}
    finally:
        db.dispose()


def test_a_strangers_payment_and_an_unknown_id_end_with_not_found(
    server: Server, http: HttpApi, settings: Settings
) -> None:
    owner = http.user("sub-owner")
    payment = intent(owner, packageCode="trial")["payment"]
    with LiveClient(server.url) as live:
        live.init(token(settings, "sub-stranger"))
        for op_id, payment_id in (("stranger", payment["id"]), ("unknown", "pay_000000000000000000000000")):
            live.subscribe(op_id, PAYMENT_UPDATED, id=payment_id)
            message = live.recv()
            assert message["type"] == "error", message
            assert message["id"] == op_id
            assert [error["extensions"]["code"] for error in message["payload"]] == ["NOT_FOUND"]
        live.subscribe("enroll", ENROLL_UPDATED, id="enr_unknown")
        message = live.recv()
        assert (message["type"], message["payload"][0]["extensions"]["code"]) == ("error", "NOT_FOUND")
        # the connection stays open for the caller's own objects
        live.send({"type": "ping"})
        assert live.recv() == {"type": "pong"}


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + issue_token(make_settings("sqlite://", jwt_secret="x" * 40), "sub-forged")},
    ],
    ids=["missing", "malformed", "not-bearer", "other-secret"],
)
def test_a_missing_or_bad_token_closes_4403(server: Server, payload: dict[str, str]) -> None:
    with LiveClient(server.url) as live:
        live.send({"type": "connection_init", "payload": payload})
        code, reason = live.closed()
        assert code == 4403
        assert reason.startswith("Forbidden")


def test_an_expiring_token_ends_the_subscription(server: Server, http: HttpApi, settings: Settings) -> None:
    alice = http.user("sub-expiring")
    payment = intent(alice, packageCode="trial")["payment"]
    short = issue_token(settings, "sub-expiring", ttl_seconds=2)
    with LiveClient(server.url) as live:
        live.init(short)
        live.subscribe("1", PAYMENT_UPDATED, id=payment["id"])
        assert next_payload(live)["paymentUpdated"]["id"] == payment["id"]
        message = live.recv(timeout=10)
        assert message["type"] == "error"
        assert message["id"] == "1"
        assert [error["extensions"]["code"] for error in message["payload"]] == ["UNAUTHENTICATED"]
        assert live.closed() == (4403, "token expired")


def test_connections_per_user_are_limited(server: Server, settings: Settings) -> None:
    busy = token(settings, "sub-busy")
    clients = [LiveClient(server.url).__enter__() for _ in range(MAX_CONNECTIONS)]
    try:
        for client in clients:
            assert client.init(busy) == {"type": "connection_ack"}
        with LiveClient(server.url) as extra:
            extra.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {busy}"}})
            code, reason = extra.closed()
            assert code == 4429
            assert "too many connections" in reason
        with LiveClient(server.url) as other:  # another user is not held up
            assert other.init(token(settings, "sub-other")) == {"type": "connection_ack"}
        clients.pop().__exit__(None, None, None)
        deadline = time.monotonic() + 5
        while True:  # the server counts the closed one out as soon as it sees it go
            with LiveClient(server.url) as again:
                again.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {busy}"}})
                try:
                    if again.recv() == {"type": "connection_ack"}:
                        break
                except ConnectionClosed:
                    assert time.monotonic() < deadline, "a closed connection still counted"
                    time.sleep(0.1)
    finally:
        for client in clients:
            client.__exit__(None, None, None)


def test_an_oversized_message_closes_the_connection(server: Server, settings: Settings) -> None:
    with LiveClient(server.url) as live:
        live.init(token(settings, "sub-big"))
        huge = 'subscription { paymentUpdated(id: "' + "x" * 70_000 + '") { id } }'
        live.subscribe("1", huge)
        code, _reason = live.closed()
        assert code == 1009


def test_subscriptions_are_refused_over_http(http: HttpApi, settings: Settings) -> None:
    answer = httpx.post(
        f"{http.server.url}/graphql",
        json={"query": 'subscription { paymentUpdated(id: "x") { id } }'},
        headers={"Authorization": f"Bearer {token(settings, 'sub-http')}"},
    )
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_a_stripe_webhook_reaches_the_subscriber(
    tmp_path: Path, sqlite_template: Path, stripe_fake: FakeStripe
) -> None:
    shutil.copyfile(sqlite_template, tmp_path / "payql.db")
    url = f"sqlite:///{tmp_path / 'payql.db'}"
    env = live_env(
        url,
        STRIPE_SECRET_KEY=STRIPE_SECRET_KEY,
        STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
        STRIPE_API_BASE=stripe_fake.url,
    )
    settings = make_settings(url)
    with Server(env, tmp_path, name="stripe") as server:
        client, mentor = server.api(settings).user("sub-payer"), server.api(settings).user("sub-payee", "provider")
        created = intent(client, enrollId=book(client, mentor), provider="STRIPE", captureMethod="AUTOMATIC")
        payment_id = created["payment"]["id"]
        intent_id = created["clientSecret"].split("_secret_")[0]
        with LiveClient(server.url) as live:
            live.init(client.token)
            live.subscribe("1", PAYMENT_UPDATED, id=payment_id)
            assert next_payload(live)["paymentUpdated"]["status"] == "PENDING"

            stripe_fake.customer_pays(intent_id, "pm_card_visa")
            event = stripe_fake.events_of("payment_intent.succeeded")[-1]
            body, headers = stripe_fake.signed_delivery(event, STRIPE_WEBHOOK_SECRET)
            answer = httpx.post(f"{server.url}/webhooks/stripe", content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert next_payload(live)["paymentUpdated"]["status"] == "SUCCEEDED"


def test_with_redis_a_change_through_one_server_reaches_a_subscriber_of_another(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """Two servers (two processes, as two uvicorn workers) on one SQLite file share changes through Redis."""
    shutil.copyfile(sqlite_template, tmp_path / "payql.db")
    url = f"sqlite:///{tmp_path / 'payql.db'}"
    settings = make_settings(url)
    with servers(2, live_env(url, REDIS_URL="redis://127.0.0.1:6379/0"), tmp_path) as (first, second):
        payer = first.api(settings).user("redis-payer")
        payment_id = intent(payer, packageCode="trial")["payment"]["id"]
        with LiveClient(second.url) as live:
            live.init(payer.token)
            live.subscribe("1", PAYMENT_UPDATED, id=payment_id)
            assert next_payload(live)["paymentUpdated"]["status"] == "PENDING"
            payer.ok(doc.CONFIRM, paymentId=payment_id)  # through the first server
            assert next_payload(live)["paymentUpdated"]["status"] == "SUCCEEDED"

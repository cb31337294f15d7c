"""YooKassa for real (seeds/003's escrow): the official SDK, unchanged, against tests/fakes/yookassa_api.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import documents as doc
import pytest
from conftest import make_settings
from fakes.yookassa_api import FakeYooKassa
from flows import book, intent
from sqlalchemy import func, select
from support import Api, User

from payql.app import create_app, services_of
from payql.db import Database
from payql.models import WebhookEvent

SHOP, SECRET = "123456", "test_secret_key"


@pytest.fixture
def fake() -> Iterator[FakeYooKassa]:
    with FakeYooKassa(shop_id=SHOP, secret_key=SECRET) as server:
        yield server


def yookassa_settings(database_url: str, fake: FakeYooKassa, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "yookassa_shop_id": SHOP,
        "yookassa_secret_key": SECRET,
        "yookassa_api_url": f"{fake.url}/v3",
        "yookassa_trusted_ips": ["127.0.0.1"],  # the test client's address
        "provider_timeout_ms": 1500,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture
def api(database_url: str, db: Database, fake: FakeYooKassa) -> Iterator[Api]:
    settings = yookassa_settings(database_url, fake)
    with Api(create_app(settings, db=db), settings) as client:
        yield client


def notify(api: Api, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return api.request(
        "POST", "/webhooks/yookassa", content=body, headers={"Content-Type": "application/json", **(headers or {})}
    )


def held(client: User, master: User, fake: FakeYooKassa, api: Api, capture: str = "MANUAL") -> tuple[str, str, str]:
    """An enroll of 100.00 RUB whose payment the client paid at YooKassa; returns (enroll, payment, yookassa id)."""
    enroll_id = book(client, master, "100.00", "RUB")
    created = intent(
        client, enrollId=enroll_id, provider="YOOKASSA", captureMethod=capture, returnUrl="https://spa.example/back"
    )
    assert created["confirmationUrl"].startswith(fake.url)
    (yookassa_id,) = (
        pid for pid, p in fake.payments.items() if p["metadata"]["payment_id"] == created["payment"]["id"]
    )
    fake.customer_pays(yookassa_id)
    event = "payment.waiting_for_capture" if capture == "MANUAL" else "payment.succeeded"
    assert notify(api, fake.notification_for(event, yookassa_id)).json() == {"status": "processed"}
    return enroll_id, created["payment"]["id"], yookassa_id


def count(db: Database, model: type) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_seeds_003_escrow_held_then_captured_on_confirmation_and_split(api: Api, fake: FakeYooKassa) -> None:
    client, master, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    enroll_id, payment_id, yookassa_id = held(client, master, fake, api)
    assert client.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "AUTHORIZED"
    assert fake.payments[yookassa_id]["amount"] == {"value": "100.00", "currency": "RUB"}
    (create,) = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/payments")]
    assert create.body["capture"] is False  # held until the client confirms
    assert create.body["amount"] == {"value": "100.00", "currency": "RUB"}
    assert create.idempotence_key

    master.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    master.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    done = client.ok(doc.CONFIRM_ENROLL, id=enroll_id)

    assert done["enroll"]["status"] == "COMPLETED"
    assert done["payment"]["status"] == "SUCCEEDED"
    captures = [r for r in fake.requests if r.path.endswith("/capture")]
    assert len(captures) == 1
    assert captures[0].idempotence_key
    assert fake.payments[yookassa_id]["status"] == "succeeded"
    balance = master.data(doc.BALANCES)["balances"]["accounts"]
    assert [(a["currency"], a["available"]["amount"]) for a in balance] == [("RUB", "84.60")]
    books = admin.data(
        "{ platformBalances { currency revenue { amount } tax { amount } providerFees { amount } providerCash { amount } } }"
    )
    assert books["platformBalances"] == [
        {
            "currency": "RUB",
            "revenue": {"amount": "10.00"},
            "tax": {"amount": "5.40"},
            "providerFees": {"amount": "3.50"},  # YooKassa's 3.5%: the platform's cost, not the master's
            "providerCash": {"amount": "96.50"},
        }
    ]


def test_cancelling_a_held_enroll_voids_the_hold_at_yookassa(api: Api, fake: FakeYooKassa) -> None:
    client, master = api.user("client"), api.user("master", "provider")
    enroll_id, _payment_id, yookassa_id = held(client, master, fake, api)

    cancelled = client.ok(doc.CANCEL_ENROLL, id=enroll_id)

    assert cancelled["enroll"]["status"] == "CANCELLED"
    assert cancelled["payment"]["status"] == "CANCELED"
    assert fake.payments[yookassa_id]["status"] == "canceled"


def test_holds_about_to_lapse_are_released_and_their_enrolls_expire(api: Api, fake: FakeYooKassa) -> None:
    client, master = api.user("client"), api.user("master", "provider")
    fake.hold_days = 1  # lapses within HOLD_EXPIRY_MARGIN_HOURS (24)
    enroll_id, payment_id, yookassa_id = held(client, master, fake, api)
    fake.hold_days = 7
    later = held(client, api.user("master-2", "provider"), fake, api)  # a hold with time left
    holds = services_of(api.app).holds

    first = holds.expire()
    again = holds.expire()

    assert (first.expired, first.failed, again.expired) == (1, 0, 0)
    assert fake.payments[yookassa_id]["status"] == "canceled"
    assert client.data(doc.ENROLL, id=enroll_id)["enroll"]["status"] == "EXPIRED"
    assert client.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "CANCELED"
    assert fake.payments[later[2]]["status"] == "waiting_for_capture"


def test_notifications_duplicated_out_of_order_and_forged_change_only_what_yookassa_says(
    api: Api, fake: FakeYooKassa, db: Database
) -> None:
    client, master = api.user("client"), api.user("master", "provider")
    enroll_id = book(client, master, "100.00", "RUB")
    created = intent(client, enrollId=enroll_id, provider="YOOKASSA", captureMethod="AUTOMATIC")
    (yookassa_id,) = fake.payments

    # a forged "succeeded" for a payment still pending changes nothing
    forged = notify(api, fake.forged_notification("payment.succeeded", {"id": yookassa_id}))
    assert forged.status_code == 200
    assert forged.json() == {"status": "unconfirmed"}  # applied what YooKassa says (pending), not settled
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "PENDING"

    fake.customer_pays(yookassa_id)
    real = fake.notification_for("payment.succeeded", yookassa_id)
    answers = [notify(api, real).json()["status"] for _ in range(5)]
    assert answers == ["processed", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "SUCCEEDED"

    # a late "waiting_for_capture" (a state the payment has left) moves nothing backwards
    stale = fake.notification(
        "payment.waiting_for_capture", {**fake.payments[yookassa_id], "status": "waiting_for_capture"}
    )
    assert notify(api, stale).json() == {"status": "unconfirmed"}
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "SUCCEEDED"


def test_notifications_from_untrusted_addresses_are_refused(
    database_url: str, db: Database, fake: FakeYooKassa
) -> None:
    settings = yookassa_settings(
        database_url, fake, yookassa_trusted_ips=["185.71.76.0/27"], trusted_proxies=["127.0.0.1"]
    )
    with Api(create_app(settings, db=db), settings) as api:
        client, master = api.user("client"), api.user("master", "provider")
        created = intent(client, enrollId=book(client, master, "100.00", "RUB"), provider="YOOKASSA")
        (yookassa_id,) = fake.payments
        fake.customer_pays(yookassa_id)
        body = fake.notification_for("payment.waiting_for_capture", yookassa_id)

        assert notify(api, body).status_code == 400  # the proxy itself is no YooKassa address
        assert notify(api, body, {"X-Forwarded-For": "10.1.2.3"}).status_code == 400
        assert notify(api, body, {"X-Forwarded-For": "not-an-address"}).status_code == 400
        assert count(db, WebhookEvent) == 0
        behind_proxy = notify(api, body, {"X-Forwarded-For": "185.71.76.10"})
        assert behind_proxy.json() == {"status": "processed"}
        assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "AUTHORIZED"


def test_malformed_notifications_are_refused(api: Api) -> None:
    assert notify(api, b"{not json").status_code == 400
    assert notify(api, b'{"type": "notification", "event": "payment.succeeded"}').status_code == 400


def test_a_timeout_during_capture_leaves_the_enroll_ready_and_a_retry_captures_once(
    api: Api, fake: FakeYooKassa
) -> None:
    client, master = api.user("client"), api.user("master", "provider")
    enroll_id, payment_id, yookassa_id = held(client, master, fake, api)
    master.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    master.ok(doc.MARK_ENROLL_READY, id=enroll_id)

    fake.hang_next(count=1, seconds=10, path_prefix=f"/payments/{yookassa_id}/capture")
    started = time.monotonic()
    failed = client.fails(doc.CONFIRM_ENROLL, "PROVIDER_UNAVAILABLE", id=enroll_id)
    assert time.monotonic() - started < 5
    assert failed["enroll"] is None
    assert client.data(doc.ENROLL, id=enroll_id)["enroll"]["status"] == "READY"
    assert client.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "AUTHORIZED"

    done = client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    assert done["payment"]["status"] == "SUCCEEDED"
    keys = {r.idempotence_key for r in fake.requests if r.path.endswith("/capture")}
    assert len(keys) == 1  # the retry sent YooKassa the same key
    assert master.data(doc.BALANCES)["balances"]["accounts"][0]["available"]["amount"] == "84.60"


def test_partial_refund_after_completion_reverses_proportionally(api: Api, fake: FakeYooKassa) -> None:
    client, master, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    enroll_id, payment_id, yookassa_id = held(client, master, fake, api)
    master.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    master.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)

    refunded = master.ok(doc.REFUND, input={"paymentId": payment_id, "amount": {"amount": "33.33", "currency": "RUB"}})

    assert refunded["payment"]["status"] == "PARTIALLY_REFUNDED"
    (refund,) = fake.refunds.values()
    assert refund["amount"] == {"value": "33.33", "currency": "RUB"}
    assert fake.payments[yookassa_id]["refunded_amount"] == {"value": "33.33", "currency": "RUB"}
    books = admin.data(
        "{ platformBalances { revenue { amount } tax { amount } providerPayable { amount } providerFees { amount } } }"
    )
    assert books["platformBalances"] == [
        {
            "revenue": {"amount": "6.67"},
            "tax": {"amount": "3.61"},
            "providerPayable": {"amount": "56.39"},
            "providerFees": {"amount": "3.50"},
        }
    ]
    # the refund's own notification, delivered later, changes nothing more
    assert notify(api, fake.notification_for("refund.succeeded", refund["id"])).status_code == 200
    assert client.data(doc.PAYMENT, id=payment_id)["payment"]["refundedAmount"]["amount"] == "33.33"


def test_outages_at_yookassa_are_unavailable_or_rate_limited_and_a_retry_creates_one_payment(
    api: Api, fake: FakeYooKassa
) -> None:
    client, master = api.user("client"), api.user("master", "provider")
    enroll_id = book(client, master, "100.00", "RUB")
    ask = {"enrollId": enroll_id, "provider": "YOOKASSA", "idempotencyKey": "yk-1"}

    fake.fail_next(count=1, status=500, path_prefix="/payments", fail_after_processing=True)  # a lost answer
    assert client.fails(doc.CREATE_INTENT, "PROVIDER_UNAVAILABLE", input=ask)["payment"] is None
    fake.fail_next(count=1, status=429, path_prefix="/payments")
    client.fails(doc.CREATE_INTENT, "RATE_LIMITED", input=ask)

    created = client.ok(doc.CREATE_INTENT, input=ask)

    assert len(fake.payments) == 1  # the first attempt's payment, found again by its Idempotence-Key
    keys = {r.idempotence_key for r in fake.requests if r.method == "POST" and r.path.endswith("/payments")}
    assert len(keys) == 1
    assert created["confirmationUrl"].endswith(next(iter(fake.payments)))

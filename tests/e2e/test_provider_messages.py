"""No provider text reaches a client (CONTRACT.md): payql's catalogue speaks, the provider's code is `providerCode`.

Each fake is told to answer with an error whose prose is distinctive; that prose must appear nowhere in what the
client gets back (payload, payment, later queries) nor in the logs at WARNING and above.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import documents as doc
import pytest
from conftest import make_settings
from fakes.stripe_api import FakeStripe
from fakes.yookassa_api import FakeYooKassa
from flows import book
from support import Api, User

from payql.app import create_app
from payql.db import Database
from payql.providers import messages

PROSE = "Unexpected description ZEBRA-QUOKKA-7731 for this request"
WITH_PROVIDER_CODE = "errors { code field message providerCode }"
CREATE_INTENT = doc.CREATE_INTENT.replace("errors { code field message }", WITH_PROVIDER_CODE)
CONFIRM = doc.CONFIRM.replace("errors { code field message }", WITH_PROVIDER_CODE)
STRIPE_KEY = "sk_test_payql_fake"
SHOP, SHOP_SECRET = "123456", "test_secret_key"


@pytest.fixture
def stripe_fake() -> Iterator[FakeStripe]:
    with FakeStripe(secret_key=STRIPE_KEY) as server:
        yield server


@pytest.fixture
def yookassa_fake() -> Iterator[FakeYooKassa]:
    with FakeYooKassa(shop_id=SHOP, secret_key=SHOP_SECRET) as server:
        yield server


@pytest.fixture
def stripe_api(database_url: str, db: Database, stripe_fake: FakeStripe) -> Iterator[Api]:
    settings = make_settings(
        database_url, stripe_secret_key=STRIPE_KEY, stripe_api_base=stripe_fake.url, provider_timeout_ms=1500
    )
    with Api(create_app(settings, db=db), settings) as client:
        yield client


@pytest.fixture
def yookassa_api(database_url: str, db: Database, yookassa_fake: FakeYooKassa) -> Iterator[Api]:
    settings = make_settings(
        database_url,
        yookassa_shop_id=SHOP,
        yookassa_secret_key=SHOP_SECRET,
        yookassa_api_url=f"{yookassa_fake.url}/v3",
        yookassa_trusted_ips=["127.0.0.1"],
        provider_timeout_ms=1500,
    )
    with Api(create_app(settings, db=db), settings) as client:
        yield client


def only_payment(user: User) -> dict[str, Any]:
    (edge,) = user.data(doc.PAYMENTS, first=5)["payments"]["edges"]
    node: dict[str, Any] = edge["node"]
    return node


def assert_unseen(prose: str, *answers: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Neither the answers nor any log line at WARNING and above contain the provider's prose."""
    for answer in answers:
        assert prose not in json.dumps(answer)
    loud = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert all(prose not in line for line in loud), loud


def test_a_stripe_refusal_reaches_the_client_as_payqls_message_and_stripes_code(
    stripe_api: Api, stripe_fake: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client, mentor = stripe_api.user("client"), stripe_api.user("mentor", "provider")
    enroll_id = book(client, mentor, "100.00", "USD")
    stripe_fake.fail_next(
        status=400, path_prefix="/v1/payment_intents", method="POST", code="parameter_invalid_string", message=PROSE
    )

    refused = client.fails(CREATE_INTENT, "INVALID_INPUT", input={"enrollId": enroll_id, "provider": "STRIPE"})

    (error,) = refused["errors"]
    assert error["message"] == messages.REFUSED
    assert error["providerCode"] == "parameter_invalid_string"
    payment = only_payment(client)
    assert payment["status"] == "FAILED"
    assert payment["failureCode"] == "parameter_invalid_string"
    assert payment["failureMessage"] == messages.REFUSED
    assert_unseen(PROSE, refused, payment, caplog=caplog)


def test_a_stripe_decline_is_told_in_payqls_words(
    stripe_api: Api, stripe_fake: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client, mentor = stripe_api.user("client"), stripe_api.user("mentor", "provider")
    enroll_id = book(client, mentor, "100.00", "USD")
    created = client.ok(CREATE_INTENT, input={"enrollId": enroll_id, "provider": "STRIPE"})
    payment_id = created["payment"]["id"]

    short = client.fails(
        CONFIRM, "PAYMENT_DECLINED", paymentId=payment_id, paymentMethod="pm_card_visa_chargeDeclinedInsufficientFunds"
    )

    (error,) = short["errors"]
    assert error == {
        "code": "PAYMENT_DECLINED",
        "field": None,
        "message": "The card has insufficient funds",
        "providerCode": "insufficient_funds",
    }
    assert short["payment"]["failureCode"] == "insufficient_funds"
    assert short["payment"]["failureMessage"] == "The card has insufficient funds"
    # Stripe's own sentence (the fake's, as Stripe words it) is not what the client reads
    assert_unseen("Your card has insufficient funds.", short, only_payment(client), caplog=caplog)


def test_a_stripe_error_on_a_refund_keeps_its_prose_out(
    stripe_api: Api, stripe_fake: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client, mentor = stripe_api.user("client"), stripe_api.user("mentor", "provider")
    enroll_id = book(client, mentor, "100.00", "USD")
    created = client.ok(
        CREATE_INTENT, input={"enrollId": enroll_id, "provider": "STRIPE", "captureMethod": "AUTOMATIC"}
    )
    client.ok(CONFIRM, paymentId=created["payment"]["id"], paymentMethod="pm_card_visa")
    stripe_fake.fail_next(status=402, path_prefix="/v1/refunds", code="charge_not_refundable", message=PROSE)
    refund = doc.REFUND.replace("errors { code field message }", WITH_PROVIDER_CODE)

    answer = mentor.data(refund, input={"paymentId": created["payment"]["id"]})["refund"]

    (error,) = answer["errors"]
    assert error["providerCode"] == "charge_not_refundable"
    assert error["message"] == messages.CATALOGUE["charge_not_refundable"]
    assert_unseen(PROSE, answer, only_payment(client), caplog=caplog)


def test_a_yookassa_refusal_reaches_the_client_as_payqls_message_and_yookassas_code(
    yookassa_api: Api, yookassa_fake: FakeYooKassa, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client, master = yookassa_api.user("client"), yookassa_api.user("master", "provider")
    enroll_id = book(client, master, "100.00", "RUB")
    yookassa_fake.fail_next(
        status=400,
        path_prefix="/payments",
        method="POST",
        code="invalid_request",
        description=PROSE,
        parameter="description",
    )

    refused = client.fails(CREATE_INTENT, "INVALID_INPUT", input={"enrollId": enroll_id, "provider": "YOOKASSA"})

    (error,) = refused["errors"]
    assert error["message"] == messages.REFUSED
    assert error["providerCode"] == "invalid_request"
    payment = only_payment(client)
    assert payment["status"] == "FAILED"
    assert payment["failureCode"] == "invalid_request"
    assert payment["failureMessage"] == messages.REFUSED
    assert_unseen(PROSE, refused, payment, caplog=caplog)


def test_a_yookassa_credentials_refusal_names_no_provider_text(
    yookassa_api: Api, yookassa_fake: FakeYooKassa, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client, master = yookassa_api.user("client"), yookassa_api.user("master", "provider")
    enroll_id = book(client, master, "100.00", "RUB")
    yookassa_fake.fail_next(status=401, path_prefix="/payments", method="POST", description=PROSE)

    refused = client.fails(CREATE_INTENT, "PROVIDER_ERROR", input={"enrollId": enroll_id, "provider": "YOOKASSA"})

    (error,) = refused["errors"]
    assert error["message"] == messages.CREDENTIALS
    assert error["providerCode"] == "invalid_credentials"
    assert_unseen(PROSE, refused, only_payment(client), caplog=caplog)

"""The YooKassa fake, driven through the real `yookassa` SDK (global `Configuration`, `requests` underneath), never
patched. Raw `requests` calls show what the SDK cannot send (a missing Idempotence-Key, a float amount)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from yookassa import Configuration, Payment, Payout, Refund
from yookassa.client import ApiClient
from yookassa.domain.exceptions import (
    ApiError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    ResponseProcessingError,
    TooManyRequestsError,
    UnauthorizedError,
)
from yookassa.domain.notification import WebhookNotificationFactory
from yookassa.domain.request import PaymentRequest
from yookassa.domain.response import PaymentResponse

from fakes.yookassa_api import FakeYooKassa

SHOP_ID = "123456"
SECRET_KEY = "test_secret"
RETURN_URL = "https://shop.example/return"
CARD = "5555555555554477"
_SDK_SETTINGS = ("account_id", "secret_key", "auth_token", "api_url", "timeout", "max_attempts", "verify", "logger")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeYooKassa]:
    with FakeYooKassa(shop_id=SHOP_ID, secret_key=SECRET_KEY) as server:
        yield server


def configure(fake: FakeYooKassa, secret_key: str = SECRET_KEY) -> None:
    Configuration.configure(fake.shop_id, secret_key)
    Configuration.api_url = fake.url + "/v3"  # configure() resets api_url


@pytest.fixture(autouse=True)
def sdk(fake: FakeYooKassa) -> Iterator[None]:
    """The SDK's configuration is process-global: point it at the fake, put it back afterwards."""
    saved = {name: getattr(Configuration, name) for name in _SDK_SETTINGS}
    fake.commission_bps, fake.hold_days = 350, 7
    fake.refunds_pending = fake.payouts_succeed_immediately = False
    configure(fake)
    yield
    for name, value in saved.items():
        setattr(Configuration, name, value)
    fake.clear_failures()
    assert fake.server_errors == []


def key() -> str:
    return str(uuid.uuid4())


def rub(value: str) -> dict[str, str]:
    return {"value": value, "currency": "RUB"}


def payment_params(value: str = "100.00", *, capture: bool = False, **extra: Any) -> dict[str, Any]:
    confirmation = {"type": "redirect", "return_url": RETURN_URL}
    return {"amount": rub(value), "capture": capture, "confirmation": confirmation, **extra}


def create_payment(value: str = "100.00", *, capture: bool = False, **extra: Any) -> PaymentResponse:
    return Payment.create(payment_params(value, capture=capture, **extra), key())


def held_payment(fake: FakeYooKassa, value: str = "100.00") -> str:
    payment_id: str = create_payment(value).id
    fake.customer_pays(payment_id)
    return payment_id


def paid_payment(fake: FakeYooKassa, value: str = "100.00") -> str:
    payment_id: str = create_payment(value, capture=True).id
    fake.customer_pays(payment_id)
    return payment_id


def configure_payouts(fake: FakeYooKassa) -> None:
    """The payout gateway's credentials (agent id and its secret key): payouts accept only those."""
    Configuration.configure(fake.agent_id, fake.payout_secret_key)
    Configuration.api_url = fake.url + "/v3"


def raw_post(fake: FakeYooKassa, path: str, body: Any, idempotence_key: str | None = None) -> requests.Response:
    headers = {"Idempotence-Key": idempotence_key} if idempotence_key else {}
    auth = (fake.agent_id, fake.payout_secret_key) if path.startswith("/payouts") else (SHOP_ID, SECRET_KEY)
    return requests.post(f"{fake.url}/v3{path}", json=body, headers=headers, auth=auth, timeout=5)


def error_of(raised: pytest.ExceptionInfo[ApiError]) -> tuple[str, str | None]:
    content = raised.value.content
    assert content["type"] == "error"
    uuid.UUID(content["id"])
    return content["code"], content.get("parameter")


def parse(timestamp: str) -> datetime:
    assert timestamp.endswith("Z")
    return datetime.fromisoformat(timestamp)


# ------------------------------------------------------------------------------------- wire format, auth


def test_wrong_credentials_are_refused(fake: FakeYooKassa) -> None:
    configure(fake, secret_key="wrong")
    with pytest.raises(UnauthorizedError) as raised:
        Payment.find_one("any-id")
    assert error_of(raised) == ("invalid_credentials", "Authorization")
    assert raised.value.error.code == "invalid_credentials"


def test_payouts_take_the_payout_gateways_credentials_and_nothing_else_does(fake: FakeYooKassa) -> None:
    # the shop's credentials are refused for payouts
    with pytest.raises(UnauthorizedError) as raised:
        Payout.create({"amount": rub("1.00"), "payout_token": "tok"}, key())
    assert error_of(raised) == ("invalid_credentials", "Authorization")
    assert fake.payouts == {}

    # the gateway's are accepted for payouts, and refused for the shop's payments
    configure_payouts(fake)
    payout = Payout.create({"amount": rub("1.00"), "payout_token": "tok"}, key())
    assert Payout.find_one(payout.id).status == "pending"
    with pytest.raises(UnauthorizedError):
        Payment.find_one("any-id")


def test_requests_are_recorded_with_basic_auth_and_idempotence_key(fake: FakeYooKassa) -> None:
    idempotence_key = key()
    payment = Payment.create(payment_params(metadata={"order": "1"}), idempotence_key)
    Payment.find_one(payment.id)
    create, find = fake.requests[-2:]
    assert (create.method, create.path, create.idempotence_key) == ("POST", "/v3/payments", idempotence_key)
    assert create.body["amount"] == rub("100.00")
    assert create.body["metadata"] == {"order": "1", "cms_name": "yookassa_sdk_python"}  # the SDK adds cms_name
    headers = {name.lower(): value for name, value in create.headers.items()}
    assert headers["authorization"] == requests.auth._basic_auth_str(SHOP_ID, SECRET_KEY)
    assert headers["content-type"] == "application/json"
    assert tuple(find[:4]) == ("GET", f"/v3/payments/{payment.id}", None, None)


def test_post_without_idempotence_key_is_refused(fake: FakeYooKassa) -> None:
    response = raw_post(fake, "/payments", payment_params())
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert response.json()["parameter"] == "Idempotence-Key"


def test_amounts_must_be_positive_decimal_strings_with_two_decimals(fake: FakeYooKassa) -> None:
    for value in ("100.005", "0.00", "-1.00", 100.5, "1e2", "abc"):
        amount = {"value": value, "currency": "RUB"}
        response = raw_post(fake, "/payments", payment_params() | {"amount": amount}, key())
        assert response.status_code == 400, value
        assert (response.json()["code"], response.json()["parameter"]) == ("invalid_request", "amount.value")
    response = raw_post(fake, "/payments", payment_params() | {"amount": rub("100.5")}, key())
    assert response.json()["amount"] == rub("100.50")
    response = raw_post(fake, "/payments", payment_params() | {"amount": {"value": "1.00", "currency": "USD"}}, key())
    assert response.json()["parameter"] == "amount.currency"


def test_the_sdk_sends_amounts_through_float_and_api_client_keeps_strings(fake: FakeYooKassa) -> None:
    """`Amount.value = Decimal(str(float(value))).quantize(0.01, ROUND_HALF_UP)`: extra decimals are rounded and
    more than ~15 significant digits are lost, on requests and on responses. `ApiClient.request` with a dict body
    sends it as given and returns the parsed JSON (strings stay strings)."""
    assert dict(PaymentRequest(payment_params("100.005")))["amount"] == rub("100.01")
    assert dict(PaymentRequest(payment_params("12345678901234567.89")))["amount"] == rub("12345678901234568.00")
    body = payment_params("1234567890123456.78")
    answer = ApiClient().request("POST", "/payments", None, {"Idempotence-Key": key()}, body)
    assert answer["amount"] == rub("1234567890123456.78")
    assert fake.payments[answer["id"]]["amount"] == rub("1234567890123456.78")
    assert str(Payment.find_one(answer["id"]).amount.value) == "1234567890123456.80"  # the SDK's float


def test_payment_create_mutates_the_callers_metadata() -> None:
    metadata = {"order": "1"}
    Payment.create(payment_params(metadata=metadata), key())
    assert metadata == {"order": "1", "cms_name": "yookassa_sdk_python"}


def test_unknown_payment_and_route_are_not_found(fake: FakeYooKassa) -> None:
    with pytest.raises(NotFoundError) as raised:
        Payment.find_one("00000000-000f-5000-8000-000000000000")
    assert error_of(raised) == ("not_found", "payment_id")
    response = requests.get(f"{fake.url}/v3/nothing", auth=(SHOP_ID, SECRET_KEY), timeout=5)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


# ------------------------------------------------------------------------------------------------ payments


def test_a_held_payment_is_paid_then_captured(fake: FakeYooKassa) -> None:
    created = create_payment("100.00", description="Order 1", metadata={"order": "1"})
    assert len(created.id) == 36
    assert (created.status, created.paid, created.refundable, created.test) == ("pending", False, False, True)
    assert dict(created.amount) == rub("100.00")
    assert created.confirmation.type == "redirect"
    assert created.confirmation.confirmation_url == f"{fake.url}/checkout/{created.id}"
    assert created.confirmation.return_url == RETURN_URL
    assert (created.recipient.account_id, created.description) == (SHOP_ID, "Order 1")
    assert created.metadata == {"order": "1", "cms_name": "yookassa_sdk_python"}
    page = requests.get(created.confirmation.confirmation_url, timeout=5)
    assert (page.status_code, "pending 100.00" in page.text) == (200, True)

    fake.customer_pays(created.id)
    held = Payment.find_one(created.id)
    assert (held.status, held.paid, held.confirmation) == ("waiting_for_capture", True, None)
    assert parse(held.expires_at) - parse(held.created_at) == timedelta(days=7)
    assert (held.payment_method.type, held.payment_method.card.last4) == ("bank_card", "4477")
    assert fake.events[-1] == ("payment.waiting_for_capture", fake.payments[created.id])

    captured = Payment.capture(created.id, {"amount": rub("100.00")}, key())
    assert (captured.status, captured.paid, captured.refundable) == ("succeeded", True, True)
    assert (dict(captured.amount), dict(captured.income_amount)) == (rub("100.00"), rub("96.50"))
    assert parse(captured.captured_at) >= parse(captured.created_at)
    assert captured.expires_at is None
    assert fake.events[-1][0] == "payment.succeeded"
    assert Payment.find_one(created.id).status == "succeeded"


def test_partial_capture_and_the_commission_rate(fake: FakeYooKassa) -> None:
    fake.commission_bps = 280
    payment_id = held_payment(fake, "1000.00")
    with pytest.raises(BadRequestError) as raised:
        Payment.capture(payment_id, {"amount": rub("1000.01")}, key())
    assert error_of(raised) == ("invalid_request", "amount.value")
    captured = Payment.capture(payment_id, {"amount": rub("333.33")}, key())
    assert (dict(captured.amount), dict(captured.income_amount)) == (rub("333.33"), rub("324.00"))  # 9.33 fee

    fake.commission_bps = 350
    payment_id = held_payment(fake, "1.00")
    captured = Payment.capture(payment_id, None, key())  # no body: the whole hold
    assert dict(captured.income_amount) == rub("0.96")  # 3.5 kopecks round half-up to 4


def test_capture_true_succeeds_when_the_customer_pays(fake: FakeYooKassa) -> None:
    payment_id = paid_payment(fake, "250.00")
    payment = Payment.find_one(payment_id)
    assert (payment.status, payment.paid, payment.refundable, payment.expires_at) == ("succeeded", True, True, None)
    assert dict(payment.income_amount) == rub("241.25")
    assert [event for event, obj in fake.events if obj["id"] == payment_id] == ["payment.succeeded"]


def test_cancel_a_hold_and_refused_state_changes(fake: FakeYooKassa) -> None:
    payment_id = held_payment(fake)
    canceled = Payment.cancel(payment_id, key())
    assert (canceled.status, canceled.paid) == ("canceled", False)
    details = canceled.cancellation_details
    assert (details.party, details.reason) == ("merchant", "canceled_by_merchant")
    assert fake.events[-1][0] == "payment.canceled"
    for attempt in (lambda: Payment.cancel(payment_id, key()), lambda: Payment.capture(payment_id, None, key())):
        with pytest.raises(BadRequestError) as raised:
            attempt()
        assert error_of(raised) == ("invalid_request", None)

    with pytest.raises(BadRequestError):
        Payment.cancel(paid_payment(fake), key())
    with pytest.raises(BadRequestError):
        Payment.capture(create_payment().id, None, key())  # still pending

    with pytest.raises(BadRequestError) as raised:  # unpaid: the customer may still pay; only a hold is canceled
        Payment.cancel(create_payment().id, key())
    assert error_of(raised) == ("invalid_request", None)


@pytest.mark.parametrize(
    ("control", "party", "reason"),
    [
        (lambda fake, pid: fake.customer_declines(pid), "payment_network", "insufficient_funds"),
        (lambda fake, pid: fake.customer_declines(pid, "3d_secure_failed"), "payment_network", "3d_secure_failed"),
        (lambda fake, pid: fake.customer_abandons(pid), "yoo_money", "expired_on_confirmation"),
        (lambda fake, pid: fake.expire_hold(fake.customer_pays(pid)["id"]), "yoo_money", "expired_on_capture"),
    ],
)
def test_customer_and_yookassa_cancel_payments(
    fake: FakeYooKassa, control: Callable[[FakeYooKassa, str], Any], party: str, reason: str
) -> None:
    payment_id = create_payment().id
    control(fake, payment_id)
    payment = Payment.find_one(payment_id)
    assert (payment.status, payment.paid) == ("canceled", False)
    assert (payment.cancellation_details.party, payment.cancellation_details.reason) == (party, reason)
    with pytest.raises(ValueError, match="canceled"):
        fake.customer_pays(payment_id)


def test_controls_refuse_reasons_yookassa_does_not_have(fake: FakeYooKassa) -> None:
    with pytest.raises(ValueError, match="cancellation reason"):
        fake.customer_declines(create_payment().id, "no_reason_at_all")


def test_payment_list_is_newest_first_and_pages(fake: FakeYooKassa) -> None:
    first, second = create_payment().id, create_payment().id
    page = Payment.list({"limit": 1})
    assert [item.id for item in page.items] == [second]
    assert page.next_cursor not in {None, first, second}  # opaque
    assert Payment.list({"limit": 1, "cursor": page.next_cursor}).items[0].id == first


# ------------------------------------------------------------------------------------------- idempotence


def test_same_key_and_body_replays_the_first_answer(fake: FakeYooKassa) -> None:
    create_key = key()
    before = set(fake.payments)
    first = Payment.create(payment_params("10.00"), create_key)
    again = Payment.create(payment_params("10.00"), create_key)
    assert again.id == first.id
    assert set(fake.payments) - before == {first.id}

    fake.customer_pays(first.id)
    capture_key = key()
    captured = Payment.capture(first.id, {"amount": rub("10.00")}, capture_key)
    replayed = Payment.capture(first.id, {"amount": rub("10.00")}, capture_key)
    assert (replayed.status, replayed.captured_at) == ("succeeded", captured.captured_at)
    assert [event for event, obj in fake.events if obj["id"] == first.id].count("payment.succeeded") == 1

    with pytest.raises(BadRequestError) as raised:  # a new key asks again: the payment is no longer held
        Payment.capture(first.id, {"amount": rub("10.00")}, key())
    assert error_of(raised) == ("invalid_request", None)


def test_same_key_with_another_request_is_refused(fake: FakeYooKassa) -> None:
    reused = key()
    Payment.create(payment_params("10.00"), reused)
    with pytest.raises(BadRequestError) as raised:
        Payment.create(payment_params("11.00"), reused)
    assert error_of(raised) == ("invalid_request", "Idempotence-Key")
    assert "Idempotence key duplicated" in raised.value.content["description"]
    with pytest.raises(BadRequestError):  # same key on another endpoint
        Refund.create({"payment_id": paid_payment(fake), "amount": rub("1.00")}, reused)


def test_refused_requests_are_replayed_too(fake: FakeYooKassa) -> None:
    refused = key()
    first = raw_post(fake, "/payments", payment_params() | {"amount": rub("0.001")}, refused)
    again = raw_post(fake, "/payments", payment_params() | {"amount": rub("0.001")}, refused)
    assert (first.status_code, again.json()) == (400, first.json())


# ------------------------------------------------------------------------------------------------- refunds


def test_partial_and_full_refunds(fake: FakeYooKassa) -> None:
    payment_id = paid_payment(fake, "100.00")
    refund = Refund.create({"payment_id": payment_id, "amount": rub("30.00"), "description": "Partial"}, key())
    assert (refund.status, refund.payment_id, dict(refund.amount)) == ("succeeded", payment_id, rub("30.00"))
    assert refund.description == "Partial"
    assert fake.events[-1] == ("refund.succeeded", fake.refunds[refund.id])
    payment = Payment.find_one(payment_id)
    assert (dict(payment.refunded_amount), payment.refundable) == (rub("30.00"), True)

    with pytest.raises(BadRequestError) as raised:
        Refund.create({"payment_id": payment_id, "amount": rub("70.01")}, key())
    assert error_of(raised) == ("invalid_request", "amount.value")

    rest = Refund.create({"payment_id": payment_id, "amount": rub("70.00")}, key())
    payment = Payment.find_one(payment_id)
    assert (dict(payment.refunded_amount), payment.refundable) == (rub("100.00"), False)
    with pytest.raises(BadRequestError):
        Refund.create({"payment_id": payment_id, "amount": rub("0.01")}, key())

    assert Refund.find_one(refund.id).id == refund.id
    listed = Refund.list({"payment_id": payment_id})
    assert (listed.type, [item.id for item in listed.items]) == ("list", [rest.id, refund.id])


def test_refunds_need_a_succeeded_payment(fake: FakeYooKassa) -> None:
    held = held_payment(fake)
    with pytest.raises(BadRequestError):
        Refund.create({"payment_id": held, "amount": rub("1.00")}, key())
    with pytest.raises(BadRequestError) as raised:
        Refund.create({"payment_id": "00000000-000f-5000-8000-000000000000", "amount": rub("1.00")}, key())
    assert error_of(raised) == ("invalid_request", "payment_id")
    with pytest.raises(NotFoundError):
        Refund.find_one("missing")


def test_refunds_after_a_partial_capture_are_capped_at_the_captured_amount(fake: FakeYooKassa) -> None:
    payment_id = held_payment(fake, "100.00")
    Payment.capture(payment_id, {"amount": rub("60.00")}, key())
    with pytest.raises(BadRequestError):
        Refund.create({"payment_id": payment_id, "amount": rub("60.01")}, key())
    Refund.create({"payment_id": payment_id, "amount": rub("60.00")}, key())
    assert Payment.find_one(payment_id).refundable is False


def test_pending_refunds_settle_or_give_the_amount_back(fake: FakeYooKassa) -> None:
    fake.refunds_pending = True
    payment_id = paid_payment(fake, "50.00")
    pending = Refund.create({"payment_id": payment_id, "amount": rub("50.00")}, key())
    assert pending.status == "pending"
    payment = Payment.find_one(payment_id)
    assert (payment.refunded_amount, payment.refundable) == (None, False)  # only succeeded refunds count

    canceled = fake.settle_refund(pending.id, "canceled")
    assert canceled["cancellation_details"] == {"party": "refund_network", "reason": "general_decline"}
    assert Refund.find_one(pending.id).status == "canceled"
    assert Payment.find_one(payment_id).refundable is True

    second = Refund.create({"payment_id": payment_id, "amount": rub("50.00")}, key())
    fake.settle_refund(second.id)
    assert Refund.find_one(second.id).status == "succeeded"
    assert fake.events[-1][0] == "refund.succeeded"
    assert dict(Payment.find_one(payment_id).refunded_amount) == rub("50.00")
    with pytest.raises(ValueError, match="cannot be settled"):
        fake.settle_refund(second.id)


def test_refund_lists_page_ten_at_a_time_up_to_a_hundred_with_next_cursor(fake: FakeYooKassa) -> None:
    payment_id = paid_payment(fake, "100.00")
    made = [Refund.create({"payment_id": payment_id, "amount": rub("1.00")}, key()).id for _ in range(12)]
    Refund.create({"payment_id": paid_payment(fake, "5.00"), "amount": rub("1.00")}, key())  # another payment's

    first = Refund.list({"payment_id": payment_id})  # YooKassa's default page: 10, newest first
    assert [item.id for item in first.items] == made[::-1][:10]
    assert first.next_cursor
    rest = Refund.list({"payment_id": payment_id, "cursor": first.next_cursor})
    assert [item.id for item in rest.items] == made[1::-1]
    assert rest.next_cursor is None  # the last page has none
    everything = Refund.list({"payment_id": payment_id, "limit": 100})
    assert (len(everything.items), everything.next_cursor) == (12, None)
    for limit in (0, 101):
        with pytest.raises(BadRequestError):
            Refund.list({"payment_id": payment_id, "limit": limit})
    with pytest.raises(BadRequestError):
        Refund.list({"payment_id": payment_id, "cursor": "not-a-cursor"})


# ------------------------------------------------------------------------------------------------- payouts


def test_payouts_to_a_card_settle(fake: FakeYooKassa) -> None:
    configure_payouts(fake)
    params = {
        "amount": rub("500.00"),
        "payout_destination_data": {"type": "bank_card", "card": {"number": "2200000000000004"}},
        "description": "Payout 1",
        "metadata": {"seller": "7"},
    }
    payout = Payout.create(params, key())
    assert payout.id.startswith("po-")
    assert (payout.status, dict(payout.amount), payout.description) == ("pending", rub("500.00"), "Payout 1")
    card = payout.payout_destination.card
    assert (card.first6, card.last4, card.card_type) == ("220000", "0004", "Mir")
    assert payout.metadata == {"seller": "7"}

    fake.settle_payout(payout.id)
    settled = Payout.find_one(payout.id)
    assert (settled.status, parse(settled.succeeded_at) >= parse(settled.created_at)) == ("succeeded", True)
    assert fake.events[-1][0] == "payout.succeeded"

    declined = Payout.create({"amount": rub("1.00"), "payout_token": "tok_1"}, key())
    fake.settle_payout(declined.id, "canceled", "insufficient_funds")
    canceled = Payout.find_one(declined.id)
    assert (canceled.status, canceled.cancellation_details.reason) == ("canceled", "insufficient_funds")
    assert canceled.payout_destination.card.last4 == CARD[-4:]


def test_payouts_can_succeed_at_once_and_need_one_destination(fake: FakeYooKassa) -> None:
    configure_payouts(fake)
    fake.payouts_succeed_immediately = True
    payout = Payout.create({"amount": rub("10.00"), "payment_method_id": "pm-1"}, key())
    assert payout.status == "succeeded"
    two = {"amount": rub("1.00"), "payout_token": "t", "payment_method_id": "pm-1"}
    assert raw_post(fake, "/payouts", two, key()).status_code == 400
    bad_card = {"amount": rub("1.00"), "payout_destination_data": {"type": "bank_card", "card": {"number": "12"}}}
    assert raw_post(fake, "/payouts", bad_card, key()).json()["parameter"] == "payout_destination_data.card.number"


# ------------------------------------------------------------------------------------------------ failures


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (500, InternalServerError, "internal_server_error"),
        (429, TooManyRequestsError, "too_many_requests"),
        (503, ApiError, "internal_server_error"),
        (202, ResponseProcessingError, None),
    ],
)
def test_injected_failures_surface_as_sdk_errors(
    fake: FakeYooKassa, status: int, error: type[ApiError], code: str | None
) -> None:
    payment_id = create_payment().id
    fake.fail_next(status=status, path_prefix="/payments/")
    with pytest.raises(error) as raised:
        Payment.find_one(payment_id)
    assert raised.value.content.get("code") == code
    assert Payment.find_one(payment_id).id == payment_id  # one failure only


def test_failures_only_hit_matching_paths(fake: FakeYooKassa) -> None:
    fake.fail_next(status=500, path_prefix="/refunds")
    create_payment()
    with pytest.raises(InternalServerError):
        Refund.list({"payment_id": "x" * 36})


def test_a_lost_response_is_replayed_for_the_same_key(fake: FakeYooKassa) -> None:
    fake.fail_next(path_prefix="/payments", fail_after_processing=True)
    retried = key()
    before = set(fake.payments)
    with pytest.raises(InternalServerError):
        Payment.create(payment_params("77.00"), retried)
    (created_id,) = set(fake.payments) - before
    assert Payment.create(payment_params("77.00"), retried).id == created_id
    assert set(fake.payments) - before == {created_id}


def test_a_hang_outlasts_a_client_deadline_and_is_then_processed(fake: FakeYooKassa) -> None:
    fake.hang_next(seconds=0.5, path_prefix="/payments", method="POST")
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(create_payment("5.00")))
    worker.start()
    worker.join(0.1)  # the SDK sets no timeout: the caller has to impose a deadline
    assert worker.is_alive()
    worker.join(5)
    assert outcome[0].status == "pending"


def test_close_ends_a_hang_and_the_sdk_raises_attribute_error() -> None:
    """A dropped connection (`requests.ConnectionError`) reaches `__handle_error(e.response)` with `response=None`:
    the SDK raises AttributeError, not an ApiError."""
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            Payment.find_one("any")
        except Exception as error:  # noqa: BLE001 - the point is which exception the SDK raises
            outcome.append(error)

    with FakeYooKassa(shop_id=SHOP_ID, secret_key=SECRET_KEY) as own:
        configure(own)
        own.hang_next(seconds=60)
        worker = threading.Thread(target=call)
        worker.start()
        worker.join(0.2)
        assert worker.is_alive()
        started = time.monotonic()
        own.close()
        worker.join(5)
        assert time.monotonic() - started < 2
    assert not worker.is_alive()
    assert isinstance(outcome[0], AttributeError)
    own.close()  # a second close is harmless


# ------------------------------------------------------------------------------------------- notifications


def test_notifications_parse_with_the_sdk(fake: FakeYooKassa) -> None:
    payment_id = held_payment(fake)
    body = fake.notification_for("payment.waiting_for_capture", payment_id)
    notification = WebhookNotificationFactory().create(json.loads(body))
    assert (notification.type, notification.event) == ("notification", "payment.waiting_for_capture")
    assert (notification.object.id, notification.object.status, notification.object.paid) == (
        payment_id,
        "waiting_for_capture",
        True,
    )
    with pytest.raises(ValueError, match="lie"):
        fake.notification_for("payment.succeeded", payment_id)

    Payment.capture(payment_id, None, key())
    refund = Refund.create({"payment_id": payment_id, "amount": rub("1.00")}, key())
    parsed = WebhookNotificationFactory().create(json.loads(fake.notification_for("refund.succeeded", refund.id)))
    assert (parsed.object.id, parsed.object.payment_id) == (refund.id, payment_id)
    assert str(parsed.object.amount.value) == "1.00"

    fake.payouts_succeed_immediately = True
    configure_payouts(fake)
    payout = Payout.create({"amount": rub("3.00"), "payout_token": "tok"}, key())
    parsed = WebhookNotificationFactory().create(json.loads(fake.notification_for("payout.succeeded", payout.id)))
    assert (parsed.object.id, parsed.object.status) == (payout.id, "succeeded")


def test_events_snapshot_each_state_change(fake: FakeYooKassa) -> None:
    payment_id = held_payment(fake)
    Payment.capture(payment_id, None, key())
    mine = [(event, obj) for event, obj in fake.events if obj["id"] == payment_id]
    assert [event for event, _ in mine] == ["payment.waiting_for_capture", "payment.succeeded"]
    old = WebhookNotificationFactory().create(json.loads(fake.notification(*mine[0])))  # a late delivery
    assert old.object.status == "waiting_for_capture"


def test_forged_notifications_claim_what_the_store_does_not(fake: FakeYooKassa) -> None:
    payment_id = create_payment("100.00").id
    forged = json.loads(fake.forged_notification("payment.succeeded", {"id": payment_id}))
    assert (forged["object"]["status"], forged["object"]["paid"]) == ("succeeded", True)
    assert WebhookNotificationFactory().create(forged).object.status == "succeeded"
    assert Payment.find_one(payment_id).status == "pending"  # re-fetching tells the truth

    richer = json.loads(fake.forged_notification("payment.succeeded", {"id": payment_id, "amount": rub("1.00")}))
    assert richer["object"]["amount"] == rub("1.00")
    with pytest.raises(ValueError, match="sends no"):
        fake.forged_notification("payment.created", {"id": payment_id})

"""A stateful fake of the YooKassa v3 API that the real `yookassa` SDK talks to over HTTP (DESIGN.md §8).

`FakeYooKassa` runs a `ThreadingHTTPServer` on 127.0.0.1 (port 0) and speaks the wire format the SDK uses: JSON
bodies, Basic auth with `shop_id:secret_key`, the mandatory `Idempotence-Key` header on POST (same key and body:
the first answer is replayed; same key, other request: 400), and `{"type": "error", …}` bodies with YooKassa's
statuses. It keeps payments, refunds and payouts the way YooKassa does and offers test-side controls for what the
customer and YooKassa itself would do (pay, decline, abandon, let a hold expire, settle), failure injection and
notification bodies.

    with FakeYooKassa(shop_id="123456", secret_key="test_secret") as fake:
        Configuration.configure(fake.shop_id, fake.secret_key)
        Configuration.api_url = fake.url + "/v3"  # configure() resets api_url: set it afterwards

Amounts travel as decimal strings ("100.00"); the fake keeps them as integer kopecks and renders exactly two
decimals. Features the fake does not model are refused with a 400 whose description starts with "FakeYooKassa".
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import secrets
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl

from yookassa.domain.models.cancellation_details import (
    CancellationDetailsReasonCode,
    PayoutCancellationDetailsReasonCode,
    RefundCancellationDetailsReasonCode,
)

if TYPE_CHECKING or __package__:  # imported by the tests (`fakes.…`), or run as a script from this folder
    from ._http import FakeProvider, ProviderError, Received
else:
    from _http import FakeProvider, ProviderError, Received

Obj = dict[str, Any]

# ---------------------------------------------------------------------------------------------------- wire format


class YooKassaApiError(ProviderError):
    """An answer in YooKassa's error format: `{"type": "error", "id", "code", "description", "parameter"}`."""

    def __init__(self, status: int, body: Obj) -> None:
        super().__init__(body.get("description"))
        self.status = status
        self.body = body

    def wire(self) -> bytes:
        return _dumps(self.body)


def _error(status: int, code: str, description: str, parameter: str | None = None) -> YooKassaApiError:
    body: Obj = {"type": "error", "id": str(uuid.uuid4()), "code": code, "description": description}
    if parameter:
        body["parameter"] = parameter
    return YooKassaApiError(status, body)


def _invalid(description: str, parameter: str | None = None) -> YooKassaApiError:
    return _error(400, "invalid_request", description, parameter)


def _unsupported(feature: str, parameter: str) -> YooKassaApiError:
    return _invalid(f"FakeYooKassa does not support {feature}", parameter)


_INJECTED = {
    400: ("invalid_request", "Injected failure"),
    401: ("invalid_credentials", "Login or password is invalid"),
    403: ("forbidden", "Operation is forbidden for this shop"),
    404: ("not_found", "Resource not found"),
    429: ("too_many_requests", "Too many requests. Wait and try again"),
}


def _injected_body(status: int) -> Obj:
    if status == 202:  # "accepted, still processing": YooKassa's body has no `code`
        return {"type": "processing", "id": str(uuid.uuid4()), "description": "Request accepted", "retry_after": 1800}
    code, description = _INJECTED.get(status, ("internal_server_error", "Internal server error"))
    return _error(status, code, description).body


def _dumps(payload: Obj) -> bytes:
    return json.dumps(payload, ensure_ascii=False, indent=2).encode()


def _timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, as YooKassa writes it: 2024-05-01T12:00:00.123Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _cursor(object_id: str) -> str:
    return base64.urlsafe_b64encode(f"after:{object_id}".encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> str | None:
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded.removeprefix("after:") if decoded.startswith("after:") else None


def _object_id(middle: str) -> str:
    """A 36-character id shaped like YooKassa's (`2d8c6f2e-000f-5000-8000-1a2b3c4d5e6f`): the SDK checks the length."""
    return f"{secrets.token_hex(4)}-{middle}-{secrets.choice('89ab')}{secrets.token_hex(2)[1:]}-{secrets.token_hex(6)}"


# ----------------------------------------------------------------------------------- amounts and parameters

_VALUE = re.compile(r"(0|[1-9]\d{0,15})(?:\.(\d{1,2}))?")


def _format(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _money(minor: int, currency: str) -> Obj:
    return {"value": _format(minor), "currency": currency}


def _amount(params: Obj, currency: str, name: str = "amount", *, required: bool = True) -> int | None:
    """Kopecks of `{"value": "100.00", "currency": "RUB"}`: a decimal string, at most 2 decimals, above zero."""
    amount = params.get(name)
    if amount is None:
        if required:
            raise _invalid(f"Missing required parameter: {name}", name)
        return None
    if not isinstance(amount, dict):
        raise _invalid(f"Invalid parameter value: {name} must be an object", name)
    value = amount.get("value")
    match = _VALUE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        message = f"Invalid {name}.value: {value!r}. Use a decimal string with at most 2 digits after the point"
        raise _invalid(message, f"{name}.value")
    minor = int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))
    if minor <= 0:
        raise _invalid(f"Invalid {name}.value: {value}. The amount must be greater than 0", f"{name}.value")
    if amount.get("currency") != currency:
        message = f"Invalid {name}.currency: {amount.get('currency')!r}. The shop accepts {currency}"
        raise _invalid(message, f"{name}.currency")
    return minor


def _text(params: Obj, name: str, max_length: int, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise _invalid(f"Missing required parameter: {name}", name)
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise _invalid(f"Invalid parameter value: {name} must be a string of 1 to {max_length} characters", name)
    return value


def _metadata(params: Obj) -> dict[str, str]:
    """YooKassa's limits: up to 16 keys, keys up to 32 characters, values up to 512 characters."""
    value = params.get("metadata") or {}
    if not isinstance(value, dict) or len(value) > 16:
        raise _invalid("Invalid metadata: an object with up to 16 keys", "metadata")
    for key, item in value.items():
        if len(key) > 32 or not isinstance(item, str) or len(item) > 512:
            raise _invalid("Invalid metadata: keys up to 32 characters, string values up to 512", f"metadata.{key}")
    return dict(value)


def _refuse_features(params: Obj, *names: str) -> None:
    """Money-moving features the fake does not model: refused rather than silently ignored."""
    for name in names:
        if params.get(name):
            raise _unsupported(name, name)


_REASONS = {
    kind: frozenset(value for name, value in vars(codes).items() if not name.startswith("_"))
    for kind, codes in (
        ("payment", CancellationDetailsReasonCode),
        ("refund", RefundCancellationDetailsReasonCode),
        ("payout", PayoutCancellationDetailsReasonCode),
    )
}


def _check_reason(kind: str, reason: str) -> None:
    if reason not in _REASONS[kind]:
        raise ValueError(f"{reason!r} is not a {kind} cancellation reason of YooKassa's")


def _card(number: str) -> Obj:
    if number.startswith("4"):
        card_type = "Visa"
    elif number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        card_type = "MasterCard"
    elif "2200" <= number[:4] <= "2204":
        card_type = "Mir"
    else:
        card_type = "Unknown"
    return {"first6": number[:6], "last4": number[-4:], "card_type": card_type, "issuer_country": "RU"}


# ------------------------------------------------------------------------------------------------ plumbing


class RecordedRequest(NamedTuple):
    method: str
    path: str  # with the query string, if any
    body: Any  # the parsed JSON body, or None
    idempotence_key: str | None
    headers: dict[str, str]


class _Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str = "application/json"

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type}


class _Incoming(NamedTuple):
    method: str
    path: str  # without the query string
    query: dict[str, str]
    body: Any  # the parsed JSON body, or None
    idempotence_key: str | None
    authorization: str
    parse_error: YooKassaApiError | None


@dataclass
class _Stored:
    fingerprint: tuple[str, str, str]  # method, path, canonical JSON of the body
    reply: _Reply


class _Route(NamedTuple):
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Obj]


# ------------------------------------------------------------------------------------------------ the fake

_PAYMENT_EVENTS = {"payment.waiting_for_capture", "payment.succeeded", "payment.canceled"}
_EVENTS = _PAYMENT_EVENTS | {"refund.succeeded", "payout.succeeded", "payout.canceled"}


TEST_SECRET = "test_secret"
TEST_PAYOUT_SECRET = "test_payout_secret"  # the payout gateway's key in tests


class FakeYooKassa(FakeProvider[_Incoming, RecordedRequest, tuple[str, Obj]]):
    """A YooKassa shop on 127.0.0.1 for the real SDK. All state sits behind one lock; `payments`, `refunds`,
    `payouts` (JSON-like dicts by id), `events` (notification type, object snapshot) and `requests` are there for
    assertions. Settable: `commission_bps`, `hold_days`, `refunds_pending`, `payouts_succeed_immediately`,
    `payout_token_card`, `clock`."""

    _key_header = "idempotence-key"

    def __init__(
        self,
        shop_id: str = "123456",
        secret_key: str = TEST_SECRET,
        *,
        agent_id: str = "505050",
        payout_secret_key: str = TEST_PAYOUT_SECRET,
        currency: str = "RUB",
        port: int = 0,
    ) -> None:
        self.shop_id = shop_id
        self.secret_key = secret_key
        # Payouts go through the payout gateway, with its own agent id and secret key: the shop's credentials are
        # refused there (401), and the gateway's are refused for the shop's payments and refunds.
        self.agent_id = agent_id
        self.payout_secret_key = payout_secret_key
        self.currency = currency
        self.gateway_id = "100700"
        self.commission_bps = 350  # YooKassa's fee, deducted in `income_amount` (half-up to kopecks)
        self.hold_days = 7  # a held payment's `expires_at` is `created_at` + hold_days
        self.refunds_pending = False  # new refunds start `pending` until `settle_refund`
        self.payouts_succeed_immediately = False  # else new payouts stay `pending` until `settle_payout`
        self.payout_token_card = "5555555555554477"  # the card a `payout_token` or `payment_method_id` stands for
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.payments: dict[str, Obj] = {}
        self.refunds: dict[str, Obj] = {}
        self.payouts: dict[str, Obj] = {}
        self._captured: dict[str, int] = {}  # payment id → kopecks held or captured (the payment's amount)
        self._reserved: dict[str, int] = {}  # payment id → kopecks in pending and succeeded refunds
        self._refunded: dict[str, int] = {}  # payment id → kopecks in succeeded refunds
        self._refund_amounts: dict[str, int] = {}
        self._capture_on_pay: dict[str, bool] = {}  # pending payment id → its `capture` flag
        self._stored: dict[str, _Stored] = {}
        self._routes = self._build_routes()
        super().__init__(port)

    # ------------------------------------------------------------------------------ failure injection

    def _rule_prefix(self, path_prefix: str | None) -> str:
        """`/v3` is optional in `path_prefix`: "/payments" == "/v3/payments"."""
        if not path_prefix:
            return "/v3/"
        return path_prefix if path_prefix.startswith("/v3") else "/v3" + path_prefix

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        path_prefix: str | None = None,
        *,
        method: str | None = None,
        fail_after_processing: bool = False,
        code: str | None = None,
        description: str | None = None,
        parameter: str | None = None,
    ) -> None:
        """Answer the next `count` matching requests with `status` and YooKassa's error body (429:
        `too_many_requests`, 5xx: `internal_server_error`, 202: a `processing` body; `code`, `description` and
        `parameter` replace the usual ones). `path_prefix` is matched against the path, `/v3` optional
        (`"/payments"` == `"/v3/payments"`). With `fail_after_processing` the request is processed and its answer
        saved for its Idempotence-Key before the error goes out: a lost response, which a retry with the same key gets
        back."""
        body = None
        if code is not None or description is not None or parameter is not None:
            usual_code, usual_description = _INJECTED.get(status, ("internal_server_error", "Internal server error"))
            body = _error(status, code or usual_code, description or usual_description, parameter).body

        def failure() -> YooKassaApiError:  # the usual body is made afresh for each request: it has its own id
            return YooKassaApiError(status, body or _injected_body(status))

        self._add_rule(count, path_prefix, method, fail_after_processing, failure=failure)

    # ------------------------------------------------------------ controls: the customer and YooKassa

    def customer_pays(self, payment_id: str, card_number: str = "5555555555554477") -> Obj:
        """The customer pays on the confirmation page: `succeeded` at once with `capture: true`, else held
        (`waiting_for_capture`, `paid`, `expires_at`)."""
        with self._lock:
            payment = self._in_status(payment_id, "pending")
            payment.pop("confirmation", None)
            payment["paid"] = True
            payment["payment_method"] = {
                "type": "bank_card",
                "id": payment_id,
                "saved": False,
                "title": f"Bank card *{card_number[-4:]}",
                "card": _card(card_number) | {"expiry_month": "12", "expiry_year": "2030"},
            }
            payment["authorization_details"] = {
                "rrn": f"{secrets.randbelow(10**12):012d}",
                "auth_code": f"{secrets.randbelow(10**6):06d}",
                "three_d_secure": {"applied": False},
            }
            if self._capture_on_pay.pop(payment_id):
                self._succeed(payment, self._captured[payment_id])
            else:
                created = datetime.fromisoformat(payment["created_at"])
                payment["status"] = "waiting_for_capture"
                payment["expires_at"] = _timestamp(created + timedelta(days=self.hold_days))
                self._emit("payment.waiting_for_capture", payment)
            return copy.deepcopy(payment)

    def customer_declines(
        self, payment_id: str, reason: str = "insufficient_funds", party: str = "payment_network"
    ) -> Obj:
        """The payment fails at the customer's bank (or 3-D Secure): canceled with that reason."""
        _check_reason("payment", reason)
        with self._lock:
            return self._fail(self._in_status(payment_id, "pending"), party, reason)

    def customer_abandons(self, payment_id: str) -> Obj:
        """The customer never confirms: YooKassa cancels the pending payment (`expired_on_confirmation`)."""
        with self._lock:
            return self._fail(self._in_status(payment_id, "pending"), "yoo_money", "expired_on_confirmation")

    def expire_hold(self, payment_id: str) -> Obj:
        """The hold runs out (`expires_at` passes) without capture or cancel: YooKassa cancels it."""
        with self._lock:
            return self._fail(self._in_status(payment_id, "waiting_for_capture"), "yoo_money", "expired_on_capture")

    def settle_refund(
        self, refund_id: str, status: str = "succeeded", reason: str = "general_decline", party: str = "refund_network"
    ) -> Obj:
        """A pending refund settles. A canceled refund gives its amount back to the payment."""
        with self._lock:
            refund = self.refunds.get(refund_id)
            if refund is None or refund["status"] != "pending" or status not in {"succeeded", "canceled"}:
                raise ValueError(f"refund {refund_id} cannot be settled as {status}")
            if status == "canceled":
                _check_reason("refund", reason)
            payment = self.payments[refund["payment_id"]]
            amount = self._refund_amounts[refund_id]
            refund["status"] = status
            if status == "succeeded":
                self._refunded[payment["id"]] += amount
                self._emit("refund.succeeded", refund)
            else:
                refund["cancellation_details"] = {"party": party, "reason": reason}
                self._reserved[payment["id"]] -= amount
            self._render_refunds(payment)
            return copy.deepcopy(refund)

    def settle_payout(self, payout_id: str, status: str = "succeeded", reason: str = "general_decline") -> Obj:
        with self._lock:
            payout = self.payouts.get(payout_id)
            if payout is None or payout["status"] != "pending" or status not in {"succeeded", "canceled"}:
                raise ValueError(f"payout {payout_id} cannot be settled as {status}")
            if status == "succeeded":
                payout.update(status="succeeded", succeeded_at=_timestamp(self.clock()))
            else:
                _check_reason("payout", reason)
                payout.update(status="canceled", cancellation_details={"party": "payout_network", "reason": reason})
            self._emit(f"payout.{status}", payout)
            return copy.deepcopy(payout)

    def _in_status(self, payment_id: str, status: str) -> Obj:
        payment = self.payments.get(payment_id)
        if payment is None or payment["status"] != status:
            found = payment["status"] if payment else "missing"
            raise ValueError(f"payment {payment_id} is {found}, not {status}")
        return payment

    def _fail(self, payment: Obj, party: str, reason: str) -> Obj:
        for name in ("confirmation", "expires_at"):
            payment.pop(name, None)
        payment.update(status="canceled", paid=False, cancellation_details={"party": party, "reason": reason})
        self._capture_on_pay.pop(payment["id"], None)
        self._emit("payment.canceled", payment)
        return copy.deepcopy(payment)

    def _succeed(self, payment: Obj, amount: int) -> None:
        commission = (amount * self.commission_bps + 5_000) // 10_000  # half-up to kopecks
        self._captured[payment["id"]] = amount
        payment.pop("expires_at", None)
        payment.update(
            status="succeeded",
            paid=True,
            amount=_money(amount, self.currency),
            income_amount=_money(amount - commission, self.currency),
            captured_at=_timestamp(self.clock()),
            refundable=True,
        )
        self._emit("payment.succeeded", payment)

    def _emit(self, event: str, obj: Obj) -> None:
        self.events.append((event, copy.deepcopy(obj)))

    # ------------------------------------------------------------------------------------ notifications

    @staticmethod
    def notification(event: str, obj: Obj) -> bytes:
        """The body YooKassa POSTs to the shop's notification URL (unsigned: trust comes from its IPs, or
        re-fetching the object)."""
        return _dumps({"type": "notification", "event": event, "object": obj})

    def notification_for(self, event: str, object_id: str) -> bytes:
        """A true notification: the object as stored now, which must be in the state the event names."""
        if event not in _EVENTS:
            raise ValueError(f"YooKassa sends no {event!r} notifications")
        with self._lock:
            obj = self._store_of(event).get(object_id)
            if obj is None or obj["status"] != event.partition(".")[2]:
                raise ValueError(f"{object_id} is {obj['status'] if obj else 'missing'}: {event} would be a lie")
            return self.notification(event, copy.deepcopy(obj))

    def forged_notification(self, event: str, obj_overrides: Obj) -> bytes:
        """A notification whose object claims what the store does not: the stored object named by
        `obj_overrides["id"]` (if any) with the overrides applied, and the status (and `paid`) the event implies
        unless overridden. For tests that prove a handler re-fetches instead of trusting the body."""
        if event not in _EVENTS:
            raise ValueError(f"YooKassa sends no {event!r} notifications")
        with self._lock:
            obj = copy.deepcopy(self._store_of(event).get(obj_overrides.get("id", ""), {}))
        status = event.partition(".")[2]
        obj["status"] = status
        if event in _PAYMENT_EVENTS:
            obj["paid"] = status != "canceled"
        return self.notification(event, obj | copy.deepcopy(obj_overrides))

    def _store_of(self, event: str) -> dict[str, Obj]:
        return {"payment": self.payments, "refund": self.refunds, "payout": self.payouts}[event.partition(".")[0]]

    # ------------------------------------------------------------------------------------------ serving

    def _customer_action(self, payment_id: str) -> _Reply:
        """The customer paying on YooKassa's page, for a person driving the fake by hand (see `main`)."""
        try:
            return _Reply(200, _dumps(self.customer_pays(payment_id)))
        except ValueError as exc:
            return _Reply(400, _dumps({"error": str(exc)}))

    def _receive(self, received: Received) -> tuple[_Incoming, RecordedRequest]:
        method, key = received.method, received.key
        body, parse_error = None, None
        if received.body:
            try:
                body = json.loads(received.body)
            except (UnicodeDecodeError, ValueError):
                parse_error = _invalid("Request body is not valid JSON")
        query = dict(parse_qsl(received.query))
        authorization = received.lower.get("authorization", "")
        incoming = _Incoming(method, received.path, query, body, key, authorization, parse_error)
        return incoming, RecordedRequest(method, received.target, body, key, received.headers)

    def _outside_api(self, method: str, path: str) -> _Reply | None:
        if method == "GET" and path.startswith("/checkout/"):
            return self._checkout_page(path.removeprefix("/checkout/"))
        if method == "POST" and path.startswith("/_fake/payments/") and path.endswith("/pay"):
            return self._customer_action(path.split("/")[3])
        return None

    def _reply(self, request: _Incoming, status: int, body: bytes) -> _Reply:
        return _Reply(status, body)

    def _authenticate(self, request: _Incoming) -> None:
        """Basic auth: `shopId:secret key` for the shop's API, `agentId:secret key` of the payout gateway for
        payouts; each pair is refused on the other's API."""
        scheme, _, token = request.authorization.partition(" ")
        try:
            credentials = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            credentials = ""
        if request.path.startswith("/v3/payouts"):
            expected, login = f"{self.agent_id}:{self.payout_secret_key}", "agentId"
        else:
            expected, login = f"{self.shop_id}:{self.secret_key}", "shopId"
        if scheme.lower() != "basic" or credentials != expected:
            message = f"Login or password is invalid. Use your {login} and secret key for Basic authentication"
            raise _error(401, "invalid_credentials", message, "Authorization")

    def _execute(self, request: _Incoming) -> _Reply:
        """Run a POST once per Idempotence-Key; replay the saved answer for the same key and request."""
        method, path, body, key = request.method, request.path, request.body, request.idempotence_key
        if method == "POST":
            if not key:
                raise _invalid("Idempotence-Key header is missing", "Idempotence-Key")
            if len(key) > 64:
                raise _invalid("Idempotence-Key is longer than 64 characters", "Idempotence-Key")
        fingerprint = (method, path, json.dumps(body, sort_keys=True))
        stored = self._stored.get(key) if key else None
        if stored:
            if stored.fingerprint != fingerprint:
                raise _invalid("Idempotence key duplicated: it was used with another request", "Idempotence-Key")
            return stored.reply
        try:
            if request.parse_error:
                raise request.parse_error
            reply = _Reply(200, _dumps(self._route(method, path, request.query, body if body is not None else {})))
        except YooKassaApiError as failure:
            reply = _Reply(failure.status, failure.wire())
        if key:
            self._stored[key] = _Stored(fingerprint, reply)
        return reply

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> Obj:
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match and route.method == method:
                if method == "POST" and not isinstance(body, dict):
                    raise _invalid("Request body must be a JSON object")
                return copy.deepcopy(route.handler(query if method == "GET" else body, *match.groups()))
        raise _error(404, "not_found", f"Unknown method: {method} {path}")

    def _build_routes(self) -> list[_Route]:
        table: list[tuple[str, str, Callable[..., Obj]]] = [
            ("POST", "/v3/payments", self._create_payment),
            ("GET", "/v3/payments", self._lister("payments")),
            ("GET", "/v3/payments/([^/]+)", self._finder("payments", "payment")),
            ("POST", "/v3/payments/([^/]+)/capture", self._capture_payment),
            ("POST", "/v3/payments/([^/]+)/cancel", self._cancel_payment),
            ("POST", "/v3/refunds", self._create_refund),
            ("GET", "/v3/refunds", self._lister("refunds")),
            ("GET", "/v3/refunds/([^/]+)", self._finder("refunds", "refund")),
            ("POST", "/v3/payouts", self._create_payout),
            ("GET", "/v3/payouts/([^/]+)", self._finder("payouts", "payout")),
        ]
        return [_Route(method, re.compile(pattern), handler) for method, pattern, handler in table]

    def _checkout_page(self, payment_id: str) -> _Reply:
        """A stub of the confirmation page: tests act with `customer_pays` and friends instead."""
        with self._lock:
            payment = self.payments.get(payment_id)
        text = f"{payment['status']} {payment['amount']['value']}" if payment else "not found"
        page = f"<!doctype html><title>FakeYooKassa</title><p>payment {payment_id}: {text}</p>".encode()
        return _Reply(200 if payment else 404, page, "text/html; charset=utf-8")

    def _finder(self, store: str, kind: str) -> Callable[[Obj, str], Obj]:
        def find(query: Obj, object_id: str) -> Obj:
            return self._get(getattr(self, store), kind, object_id)

        return find

    def _lister(self, store: str) -> Callable[[Obj], Obj]:
        """`{"type": "list", "items": [...], "next_cursor": ...}`, newest first, filtered by `payment_id` and
        `status`; `limit` 1..100 (10 by default) and `cursor` page through. `next_cursor` is there only when another
        page follows; it is opaque (the next item's position, encoded), and only valid for the same list."""

        def list_(query: Obj) -> Obj:
            limit = query.get("limit", "10")
            if not limit.isdigit() or not 1 <= int(limit) <= 100:
                raise _invalid("Invalid limit: an integer from 1 to 100", "limit")
            items = [
                item
                for item in reversed(getattr(self, store).values())
                if query.get("payment_id") in {None, item.get("payment_id")}
                and query.get("status") in {None, item["status"]}
            ]
            if cursor := query.get("cursor"):
                ids = [item["id"] for item in items]
                start = _uncursor(cursor)
                if start not in ids:
                    raise _invalid("Invalid cursor", "cursor")
                items = items[ids.index(start) :]
            page: Obj = {"type": "list", "items": items[: int(limit)]}
            if len(items) > int(limit):
                page["next_cursor"] = _cursor(items[int(limit)]["id"])
            return page

        return list_

    @staticmethod
    def _get(store: dict[str, Obj], kind: str, object_id: str, parameter: str | None = None) -> Obj:
        found = store.get(object_id)
        if found is None:
            description = f"Incorrect {kind} id. {kind.capitalize()} doesn't exist or access denied"
            if parameter:  # named in the body: the request is wrong, not the URL
                raise _invalid(description, parameter)
            raise _error(404, "not_found", description, f"{kind}_id")
        return found

    # ---------------------------------------------------------------------------------------------- payments

    def _create_payment(self, params: Obj) -> Obj:
        amount = _amount(params, self.currency) or 0
        capture = params.get("capture", False)
        if not isinstance(capture, bool):
            raise _invalid("Invalid capture: true or false", "capture")
        confirmation = params.get("confirmation")
        if not isinstance(confirmation, dict):
            raise _unsupported("payments without a confirmation", "confirmation")
        if confirmation.get("type") != "redirect":
            raise _unsupported(f"confirmation type {confirmation.get('type')!r} (only redirect)", "confirmation.type")
        return_url = _text(confirmation, "return_url", 2048)
        if return_url is None:
            raise _invalid("Missing required parameter: confirmation.return_url", "confirmation.return_url")
        _refuse_features(
            params, "payment_method_id", "payment_token", "payment_method_data", "save_payment_method", "transfers"
        )
        _refuse_features(params, "deal", "airline", "statements", "receiver")
        payment_id = _object_id("000f-5000")
        payment: Obj = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": _money(amount, self.currency),
            "confirmation": {
                "type": "redirect",
                "confirmation_url": f"{self.url}/checkout/{payment_id}",
                "return_url": return_url,
            },
            "created_at": _timestamp(self.clock()),
            "description": _text(params, "description", 128),
            "metadata": _metadata(params),
            "recipient": {"account_id": self.shop_id, "gateway_id": self.gateway_id},
            "refundable": False,
            "test": True,
        }
        if payment["description"] is None:
            del payment["description"]
        self.payments[payment_id] = payment
        self._captured[payment_id] = amount
        self._reserved[payment_id] = self._refunded[payment_id] = 0
        self._capture_on_pay[payment_id] = capture
        return payment

    def _capture_payment(self, params: Obj, payment_id: str) -> Obj:
        payment = self._get(self.payments, "payment", payment_id)
        if payment["status"] != "waiting_for_capture":
            message = (
                f"Incorrect payment status: {payment['status']}. Only waiting_for_capture payments can be captured"
            )
            raise _invalid(message)
        _refuse_features(params, "transfers", "deal", "airline")
        held = self._captured[payment_id]
        amount = _amount(params, self.currency, required=False) or held
        if amount > held:
            description = f"Amount to capture ({_format(amount)}) is more than the held amount"
            raise _invalid(description, "amount.value")
        self._succeed(payment, amount)
        return payment

    def _cancel_payment(self, params: Obj, payment_id: str) -> Obj:
        """Only a two-stage payment in `waiting_for_capture` can be canceled (YooKassa's "Cancel a payment"); an
        unpaid (`pending`) one cannot: the customer may still pay it, until YooKassa cancels it itself
        (`expired_on_confirmation`)."""
        payment = self._get(self.payments, "payment", payment_id)
        if payment["status"] != "waiting_for_capture":
            message = (
                f"Incorrect payment status: {payment['status']}. Only waiting_for_capture payments can be canceled"
            )
            raise _invalid(message)
        return self._fail(payment, "merchant", "canceled_by_merchant")

    # ----------------------------------------------------------------------------------------------- refunds

    def _create_refund(self, params: Obj) -> Obj:
        payment_id = _text(params, "payment_id", 36, required=True) or ""
        payment = self._get(self.payments, "payment", payment_id, "payment_id")
        amount = _amount(params, self.currency) or 0
        description = _text(params, "description", 250)
        metadata = _metadata(params)
        _refuse_features(params, "sources", "deal", "refund_method_data")
        if payment["status"] != "succeeded":
            raise _invalid(f"Incorrect payment status: {payment['status']}. Only succeeded payments can be refunded")
        available = self._captured[payment_id] - self._reserved[payment_id]
        if amount > available:
            message = f"Refund amount ({_format(amount)}) is more than the amount available for refund"
            raise _invalid(f"{message} ({_format(available)})", "amount.value")
        refund: Obj = {
            "id": _object_id("0015-5000"),
            "payment_id": payment_id,
            "status": "pending" if self.refunds_pending else "succeeded",
            "amount": _money(amount, self.currency),
            "created_at": _timestamp(self.clock()),
            "description": description,
            "metadata": metadata,
        }
        if description is None:
            del refund["description"]
        self.refunds[refund["id"]] = refund
        self._refund_amounts[refund["id"]] = amount
        self._reserved[payment_id] += amount
        if refund["status"] == "succeeded":
            self._refunded[payment_id] += amount
            self._emit("refund.succeeded", refund)
        self._render_refunds(payment)
        return refund

    def _render_refunds(self, payment: Obj) -> None:
        """`refunded_amount` counts succeeded refunds; `refundable` ends when refunds cover the payment."""
        payment_id = payment["id"]
        if self._refunded[payment_id]:
            payment["refunded_amount"] = _money(self._refunded[payment_id], self.currency)
        payment["refundable"] = self._reserved[payment_id] < self._captured[payment_id]

    # ----------------------------------------------------------------------------------------------- payouts

    def _create_payout(self, params: Obj) -> Obj:
        amount = _amount(params, self.currency) or 0
        sources = [
            name for name in ("payout_destination_data", "payout_token", "payment_method_id") if params.get(name)
        ]
        if len(sources) != 1:
            message = "Specify exactly one of payout_destination_data, payout_token, payment_method_id"
            raise _invalid(message, sources[1] if sources else "payout_destination_data")
        _refuse_features(params, "deal", "self_employed", "receipt_data", "personal_data")
        if sources[0] == "payout_destination_data":
            destination = self._destination(params["payout_destination_data"])
        else:
            _text(params, sources[0], 200)
            destination = {"type": "bank_card", "card": _card(self.payout_token_card)}
        payout: Obj = {
            "id": "po-" + _object_id("0009-5000"),
            "amount": _money(amount, self.currency),
            "status": "pending",
            "payout_destination": destination,
            "description": _text(params, "description", 128),
            "created_at": _timestamp(self.clock()),
            "metadata": _metadata(params),
            "test": True,
        }
        if payout["description"] is None:
            del payout["description"]
        self.payouts[payout["id"]] = payout
        if self.payouts_succeed_immediately:
            payout.update(status="succeeded", succeeded_at=payout["created_at"])
            self._emit("payout.succeeded", payout)
        return payout

    @staticmethod
    def _destination(data: Any) -> Obj:
        where = "payout_destination_data"
        if not isinstance(data, dict):
            raise _invalid(f"Invalid {where}: an object", where)
        if data.get("type") == "bank_card":
            number = (data.get("card") or {}).get("number")
            if not isinstance(number, str) or not re.fullmatch(r"\d{16,19}", number):
                raise _invalid("Invalid card number", f"{where}.card.number")
            return {"type": "bank_card", "card": _card(number)}
        if data.get("type") == "yoo_money":
            account = data.get("account_number")
            if not isinstance(account, str) or not re.fullmatch(r"\d{11,33}", account):
                raise _invalid("Invalid YooMoney wallet number", f"{where}.account_number")
            return {"type": "yoo_money", "account_number": account}
        raise _unsupported(f"payout destination type {data.get('type')!r}", f"{where}.type")


def main(argv: list[str] | None = None) -> int:
    """Serve the fake on a fixed port for development: `python tests/fakes/yookassa_api.py --notify URL`.

    With `--notify`, every notification YooKassa would send is POSTed there (from 127.0.0.1: add it to
    YOOKASSA_TRUSTED_IPS for local use). The customer pays a payment with `POST /_fake/payments/{id}/pay`.
    """
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description="a local fake of the YooKassa API")
    parser.add_argument("--port", type=int, default=12112)
    parser.add_argument("--shop-id", default="123456")
    parser.add_argument("--secret-key", default="test_secret_local")
    parser.add_argument("--notify", default=None, help="e.g. http://127.0.0.1:8000/webhooks/yookassa")
    args = parser.parse_args(argv)
    with FakeYooKassa(shop_id=args.shop_id, secret_key=args.secret_key, port=args.port) as fake:
        print(f"fake YooKassa API on {fake.url}/v3 (shop {args.shop_id})", flush=True)  # noqa: T201
        return fake.forward_events(args.notify, lambda event: (event[0], fake.notification(*event), {}))


if __name__ == "__main__":
    sys.exit(main())

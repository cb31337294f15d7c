"""A stateful fake of the Stripe API that the real `stripe` SDK talks to over HTTP (DESIGN.md §8).

`FakeStripe` runs a `ThreadingHTTPServer` on 127.0.0.1 (port 0) and speaks the v1 wire format the SDK uses:
form-encoded bodies with bracket keys, `Authorization: Bearer <secret key>`, `Idempotency-Key` replay, `{"error": …}`
bodies with Stripe's statuses, `Request-Id` headers. It keeps state the way Stripe does (customers, PaymentIntents,
charges, refunds, Checkout Sessions, transfers, events) and offers test-side controls for what the customer's browser
or Stripe itself would do (pay, authenticate, settle), failure injection, and signed webhook delivery.

    with FakeStripe() as fake:
        client = stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.url}, http_client=...)

Parameters are checked against the installed SDK's own request types (`stripe.params`), so a parameter that the
pinned API version does not know is refused with `parameter_unknown`, as Stripe does.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import secrets
import string
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache, partial
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl

import stripe
import stripe.params
import stripe.params.checkout

Obj = dict[str, Any]

# ---------------------------------------------------------------------------------------------------- wire format

_NAME = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_INDEX = re.compile(r"\[([^\[\]]*)\]")

if TYPE_CHECKING or __package__:  # imported by the tests (`fakes.…`), or run as a script from this folder
    from ._http import FakeProvider, ProviderError, Received, Reply
else:
    from _http import FakeProvider, ProviderError, Received, Reply


class FormError(ValueError):
    pass


def parse_form(encoded: str) -> Obj:
    """Decode Stripe's form encoding (`a[b][0][c]=1`, `expand[]=x`) into nested dicts and lists."""
    root: Obj = {}
    for name, value in parse_qsl(encoded, keep_blank_values=True):
        match = _NAME.fullmatch(name)
        if match is None:
            raise FormError(f"Invalid parameter name: {name}")
        path = [match.group(1), *_INDEX.findall(match.group(2))]
        node = root
        for part in path[:-1]:
            child = node.setdefault(part or str(len(node)), {})
            if not isinstance(child, dict):
                raise FormError(f"Conflicting values for parameter: {name}")
            node = child
        last = path[-1] or str(len(node))
        if isinstance(node.get(last), dict):
            raise FormError(f"Conflicting values for parameter: {name}")
        node[last] = value
    return {key: _listify(value, key) for key, value in root.items()}


def _listify(node: Any, key: str) -> Any:
    if not isinstance(node, dict):
        return node
    items = {name: _listify(value, name) for name, value in node.items()}
    # metadata keys are the merchant's, even when they look like indices
    if key != "metadata" and items and all(name.isdigit() for name in items):
        return [items[name] for name in sorted(items, key=int)]
    return items


class StripeApiError(ProviderError):
    """An answer in Stripe's error format. `stored` errors happened after the endpoint began executing (declines,
    state conflicts): Stripe saves them for the idempotency key. Parameter validation errors are not saved."""

    def __init__(self, status: int, error: Obj, *, stored: bool = False) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error
        self.stored = stored

    def wire(self) -> bytes:
        return _dumps({"error": self.error})


def _error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    stored: bool = False,
) -> StripeApiError:
    error: Obj = {"type": type_, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    return StripeApiError(status, error, stored=stored)


def _invalid(message: str, param: str | None = None, code: str | None = None) -> StripeApiError:
    return _error(400, message, code=code, param=param)


def _missing_param(param: str) -> StripeApiError:
    return _invalid(f"Missing required param: {param}.", param, "parameter_missing")


def _no_such(kind: str, object_id: str, param: str | None = None) -> StripeApiError:
    """A missing object named in the path is a 404; one named in a parameter is a 400."""
    return _error(400 if param else 404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param or "id")


def _unexpected_state(message: str) -> StripeApiError:
    return _error(400, message, code="payment_intent_unexpected_state", stored=True)


def _now() -> int:
    return int(time.time())


_ALPHABET = string.ascii_letters + string.digits


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _dumps(payload: Obj) -> bytes:
    return json.dumps(payload, indent=2).encode()


# -------------------------------------------------------------------------------------------- parameter reading


def _label(name: str, where: str) -> str:
    return f"{where}[{name}]" if where else name


def _str(params: Obj, name: str, *, required: bool = False, where: str = "") -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise _missing_param(_label(name, where))
        return None
    if not isinstance(value, str):
        raise _invalid(f"Invalid string: {value!r}", _label(name, where))
    return value


def _int(params: Obj, name: str, *, required: bool = False, minimum: int | None = None, where: str = "") -> int | None:
    text = _str(params, name, required=required, where=where)
    if text is None:
        return None
    if not re.fullmatch(r"-?\d+", text):
        raise _invalid(f"Invalid integer: {text}", _label(name, where), "parameter_invalid_integer")
    value = int(text)
    if minimum is not None and value < minimum:
        message = f"This value must be greater than or equal to {minimum}."
        raise _invalid(message, _label(name, where), "parameter_invalid_integer")
    return value


def _bool(params: Obj, name: str, *, where: str = "") -> bool | None:
    text = _str(params, name, where=where)
    if text is None:
        return None
    if text not in {"true", "false"}:
        raise _invalid(f"Invalid boolean: {text}", _label(name, where))
    return text == "true"


def _enum(
    params: Obj, name: str, choices: tuple[str, ...], *, default: str | None = None, where: str = ""
) -> str | None:
    text = _str(params, name, where=where)
    if text is None:
        return default
    if text not in choices:
        listed = ", ".join(choices[:-1]) + f", or {choices[-1]}"
        raise _invalid(f"Invalid {name}: must be one of {listed}", _label(name, where))
    return text


def _currency(params: Obj, *, where: str = "") -> str:
    text = _str(params, "currency", required=True, where=where) or ""
    if not re.fullmatch(r"[A-Za-z]{3}", text):
        raise _invalid(f"Invalid currency: {text}.", _label("currency", where))
    return text.lower()


def _metadata(params: Obj, *, where: str = "") -> dict[str, str]:
    value = params.get("metadata", {})
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise _invalid("Invalid object", _label("metadata", where))
    if len(value) > 50:
        raise _invalid("Metadata can have up to 50 keys.", _label("metadata", where))
    for key, item in value.items():
        param = f"{_label('metadata', where)}[{key}]"
        if len(key) > 40 or not isinstance(item, str) or len(item) > 500:
            raise _invalid("Metadata keys can have up to 40 characters and values up to 500 characters.", param)
    return {key: item for key, item in value.items() if item != ""}


def _updated_metadata(current: dict[str, str], params: Obj) -> dict[str, str]:
    """Stripe's update semantics: `metadata=""` clears all keys, `metadata[k]=""` clears one."""
    if params.get("metadata") == "":
        return {}
    changes = params.get("metadata", {})
    _metadata(params)
    return {key: value for key, value in (current | changes).items() if value != ""}


# Stripe's minimum charge amounts (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts)
_MINIMUM_AMOUNTS = {
    "usd": 50, "eur": 50, "gbp": 30, "aud": 50, "cad": 50, "chf": 50, "jpy": 50, "nzd": 50, "sgd": 50, "brl": 50,
    "inr": 50, "aed": 200, "bgn": 100, "czk": 1500, "dkk": 250, "hkd": 400, "huf": 17500, "mxn": 1000, "myr": 200,
    "nok": 300, "pln": 200, "ron": 200, "sek": 300, "thb": 1000,
}  # fmt: skip
_MAXIMUM_AMOUNT = 99_999_999


# https://docs.stripe.com/currencies: "special cases" and three-decimal currencies. Stripe keeps ISK a two-decimal
# currency whose amounts must be whole krónur (divisible by 100) since 2023; the five three-decimal currencies take
# amounts ending in 0 only, in PaymentIntents, Refunds and Disputes alike. (Zero-decimal currencies need no rule of
# their own: their amount is a count of whole units, and the minimums below are in those units, e.g. ¥50.)
_WHOLE_TWO_DECIMAL = frozenset({"isk"})
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def _check_units(amount: int, currency: str, param: str, *, stored: bool = False) -> None:
    """The currency rules every amount of a charge, capture or refund follows."""
    if currency in _WHOLE_TWO_DECIMAL and amount % 100:
        message = (
            f"Invalid amount. Currency {currency.upper()} has become effectively zero-decimal and charged amounts "
            "must be evenly divisible by 100. See https://stripe.com/docs/currencies#special-cases for more "
            "information."
        )
        raise _error(400, message, code="invalid_charge_amount_no_decimal_compatible", param=param, stored=stored)
    if currency in _THREE_DECIMAL and amount % 10:
        message = f"Invalid amount. Amounts in {currency.upper()} must be rounded to the nearest ten (end in 0)."
        raise _error(400, message, param=param, stored=stored)


def _check_amount(amount: int, currency: str, param: str) -> None:
    _check_units(amount, currency, param)
    minimum = _MINIMUM_AMOUNTS.get(currency, 1)
    if amount < minimum:
        message = f"Amount must be at least {minimum} in the smallest unit of {currency}"
        raise _invalid(message, param, "amount_too_small")
    if amount > _MAXIMUM_AMOUNT:
        raise _invalid(f"Amount must be no more than {_MAXIMUM_AMOUNT}", param, "amount_too_large")


_REQUEST_OPTIONS = frozenset(stripe.RequestOptions.__optional_keys__)


@cache
def _known_params(type_name: str) -> frozenset[str]:
    """Top-level parameters of an endpoint, from the SDK's request types (e.g. `PaymentIntentCreateParams`)."""
    module: Any = stripe.params.checkout if type_name.startswith("checkout.") else stripe.params
    params_type = getattr(module, type_name.removeprefix("checkout."))
    return frozenset(params_type.__optional_keys__ | params_type.__required_keys__) - _REQUEST_OPTIONS


_RENAMED = {"payment_method_types": "allowed_payment_method_types"}


def _injected_error(status: int) -> tuple[str, str | None, str]:
    """Type, code and message of the error body Stripe sends with `status`."""
    if status == 429:
        return "invalid_request_error", "rate_limit", "Request rate limit exceeded. Learn more about rate limits."
    if status == 402:
        return "card_error", "card_declined", "Your card was declined."
    if status >= 500:
        return "api_error", None, "An unknown error occurred"
    return "invalid_request_error", None, "Injected failure"


# ------------------------------------------------------------------------------------------------- test cards


@dataclass(frozen=True)
class _Card:
    brand: str
    last4: str
    decline: tuple[str, str, str, str | None] | None = None  # code, decline_code, message, param
    authenticate: bool = False


def _declined(decline_code: str, message: str = "Your card was declined.") -> tuple[str, str, str, None]:
    return ("card_declined", decline_code, message, None)


# https://docs.stripe.com/testing: card numbers and the test PaymentMethods that stand for them
_CARDS = {
    "4242424242424242": _Card("visa", "4242"),
    "4000056655665556": _Card("visa", "5556"),
    "5555555555554444": _Card("mastercard", "4444"),
    "378282246310005": _Card("amex", "0005"),
    "4000000000000002": _Card("visa", "0002", _declined("generic_decline")),
    "4000000000009995": _Card("visa", "9995", _declined("insufficient_funds", "Your card has insufficient funds.")),
    "4000000000009987": _Card("visa", "9987", _declined("lost_card")),
    "4000000000009979": _Card("visa", "9979", _declined("stolen_card")),
    "4000000000000069": _Card("visa", "0069", ("expired_card", "expired_card", "Your card has expired.", "exp_month")),
    "4000000000000127": _Card(
        "visa", "0127", ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", "cvc")
    ),
    "4000000000000119": _Card(
        "visa",
        "0119",
        (
            "processing_error",
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
            None,
        ),
    ),
    "4000002500003155": _Card("visa", "3155", authenticate=True),
    "4000000000003220": _Card("visa", "3220", authenticate=True),
}
_TEST_PAYMENT_METHODS = {
    "pm_card_visa": "4242424242424242",
    "pm_card_visa_debit": "4000056655665556",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_amex": "378282246310005",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_visa_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_visa_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_visa_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_authenticationRequired": "4000002500003155",
    "pm_card_threeDSecure2Required": "4000000000003220",
}

_CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action")
_RETURN_URL_REQUIRED = (
    "This PaymentIntent is configured to accept payment methods enabled in your Dashboard. Because some of these "
    "payment methods might redirect your customer off of your page, you must provide a `return_url`. If you don't "
    "want to accept redirect-based payment methods, set `automatic_payment_methods[enabled]` to `true` and "
    "`automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment Intents."
)

# Objects that Stripe renders without `livemode` (the spec lists no such field for them; tests/fakes/shapes.py checks)
_WITHOUT_LIVEMODE = frozenset({"refund"})

# ------------------------------------------------------------------------------------------------ plumbing


class RecordedRequest(NamedTuple):
    method: str
    path: str
    params: Obj
    idempotency_key: str | None
    headers: dict[str, str]


class _Reply(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


class _Ctx(NamedTuple):
    """What an event's `request` field says: the API request that caused it (None for Stripe's own doings)."""

    request_id: str | None
    idempotency_key: str | None


_NO_REQUEST = _Ctx(None, None)


@dataclass
class _Incoming:
    method: str
    path: str
    params: Obj
    idempotency_key: str | None
    request_id: str
    headers: dict[str, str]  # lower-case names
    parse_error: StripeApiError | None

    def reply(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> _Reply:
        headers = {
            "Content-Type": "application/json",
            "Request-Id": self.request_id,
            "Stripe-Version": self.headers.get("stripe-version", stripe.api_version),
        }
        if self.idempotency_key:
            headers["Idempotency-Key"] = self.idempotency_key
        return _Reply(status, headers | (extra or {}), body)

    @property
    def ctx(self) -> _Ctx:
        return _Ctx(self.request_id, self.idempotency_key)


@dataclass
class _Stored:
    method: str
    path: str
    params: Obj
    status: int
    body: bytes
    request_id: str


class _Route(NamedTuple):
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Obj]
    params_type: str


# ------------------------------------------------------------------------------------------------ the fake


DEFAULT_SECRET_KEY = "sk_test_fake"
DISPUTE_FEE = 1500  # Stripe's dispute fee in the US: $15.00
_EVIDENCE_FIELDS = tuple(sorted(stripe.Dispute.Evidence.__annotations__))  # every field of `evidence`, all null


class FakeStripe(FakeProvider[_Incoming, RecordedRequest, Obj]):
    """A Stripe API on 127.0.0.1 for the real SDK. All state sits behind one lock; the dicts by id
    (`payment_intents`, `charges`, `refunds`, `checkout_sessions`, `customers`, `transfers`, `payment_methods`) and
    `events` / `requests` are there for assertions."""

    _key_header = "idempotency-key"

    def __init__(
        self,
        secret_key: str = DEFAULT_SECRET_KEY,
        *,
        api_version: str | None = None,
        port: int = 0,
        latency_ms: int = 0,
    ) -> None:
        self.secret_key = secret_key
        self.latency_ms = latency_ms  # added to every API request, outside the lock: a Stripe far away
        self.in_flight = self.max_in_flight = 0  # requests being served now, and the most ever at once
        self.api_version = api_version or stripe.api_version  # the account's default version, rendered in events
        self.refunds_pending = False  # new refunds start `pending` until `settle_refund`
        self.customers: dict[str, Obj] = {}
        self.payment_intents: dict[str, Obj] = {}
        self.charges: dict[str, Obj] = {}
        self.refunds: dict[str, Obj] = {}
        self.checkout_sessions: dict[str, Obj] = {}
        self.transfers: dict[str, Obj] = {}
        # Connected accounts that cannot receive transfers (closed, or without the `transfers` capability): Stripe
        # refuses a transfer to them with a 400 `insufficient_capabilities_for_transfer`.
        self.unpayable_accounts: set[str] = set()
        self.payment_methods: dict[str, Obj] = {}
        self.disputes: dict[str, Obj] = {}
        # The platform's balance currency and the rate from a charge's currency, when it is kept in another currency
        # than the charges (`balance_in`): a dispute's balance transactions are then converted, as Stripe does.
        self.balance: tuple[str, Decimal] | None = None
        self._stored: dict[tuple[str, str], _Stored] = {}
        self._card_numbers: dict[str, str] = {}  # payment method id → test card number
        self._return_urls: dict[str, str] = {}  # payment intent id → return_url given at create or confirm
        self._intent_data: dict[str, Obj] = {}  # checkout session id → payment_intent_data
        self._session_of: dict[str, str] = {}  # payment intent id → the checkout session that created it
        self._routes = self._build_routes()
        super().__init__(port)

    # ------------------------------------------------------------------------------ failure injection

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        path_prefix: str | None = None,
        error_type: str | None = None,
        *,
        code: str | None = None,
        message: str | None = None,
        method: str | None = None,
        fail_after_processing: bool = False,
    ) -> None:
        """Answer the next `count` matching requests with `status` and an error body. 429 gives Stripe's rate limit
        error (`code: rate_limit`). With `fail_after_processing` the request is processed (and its result saved for
        its idempotency key) before the error is sent: a lost response."""
        default_type, default_code, default_message = _injected_error(status)
        error = _error(status, message or default_message, type_=error_type or default_type, code=code or default_code)
        failure = partial(StripeApiError, status, error.error)
        self._add_rule(count, path_prefix, method, fail_after_processing, failure=failure)

    # ------------------------------------------------------------------ controls: the customer and Stripe

    def customer_pays(self, intent_id: str, payment_method: str = "pm_card_visa") -> Obj:
        """The customer confirms the intent in the browser (Stripe.js): the same outcome as a server-side confirm,
        but a decline only sets `last_payment_error` and a 3-D Secure card gets `redirect_to_url`."""
        with self._lock:
            intent = self._get(self.payment_intents, "payment_intent", intent_id)
            self._confirm(_NO_REQUEST, intent, payment_method, server_side=False)
            return copy.deepcopy(intent)

    def complete_action(self, intent_id: str) -> Obj:
        """The customer passes 3-D Secure: requires_action → succeeded (or requires_capture)."""
        with self._lock:
            intent = self._in_status(intent_id, "requires_action")
            self._succeed(_NO_REQUEST, intent, self._new_charge(intent))
            return copy.deepcopy(intent)

    def fail_action(self, intent_id: str) -> Obj:
        """The customer fails 3-D Secure: requires_action → requires_payment_method with an authentication error."""
        with self._lock:
            intent = self._in_status(intent_id, "requires_action")
            error = {
                "code": "payment_intent_authentication_failure",
                "message": "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
                "or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
                "payment_method": copy.deepcopy(self.payment_methods[intent["payment_method"]]),
                "type": "invalid_request_error",
            }
            intent.update(status="requires_payment_method", payment_method=None, next_action=None)
            intent["last_payment_error"] = error
            self._emit(_NO_REQUEST, "payment_intent.payment_failed", intent)
            return copy.deepcopy(intent)

    def set_processing(self, intent_id: str, payment_method: str = "pm_card_visa") -> Obj:
        """The payment is submitted but settles later (e.g. a bank debit): the intent goes `processing` with a
        pending charge until `settle_processing`."""
        with self._lock:
            intent = self._get(self.payment_intents, "payment_intent", intent_id)
            if intent["status"] not in _CONFIRMABLE:
                raise ValueError(f"{intent_id} is {intent['status']}")
            if intent["payment_method"] is None:
                intent["payment_method"] = self._payment_method(payment_method, "payment_method")
            self._start_processing(_NO_REQUEST, intent)
            return copy.deepcopy(intent)

    def settle_processing(self, intent_id: str, succeeded: bool = True) -> Obj:
        with self._lock:
            intent = self._in_status(intent_id, "processing")
            charge = self.charges[intent["latest_charge"]]
            if succeeded:
                self._succeed(_NO_REQUEST, intent, charge)
            else:
                message = "The payment failed."
                charge.update(status="failed", failure_code="payment_intent_payment_attempt_failed")
                charge["failure_message"] = message
                self._emit(_NO_REQUEST, "charge.failed", charge)
                error = {"code": "payment_intent_payment_attempt_failed", "message": message, "type": "card_error"}
                intent.update(status="requires_payment_method", payment_method=None, last_payment_error=error)
                self._emit(_NO_REQUEST, "payment_intent.payment_failed", intent)
            return copy.deepcopy(intent)

    def pay_checkout(self, session_id: str, payment_method: str = "pm_card_visa", async_payment: bool = False) -> Obj:
        """The customer pays on the hosted page: a PaymentIntent for `amount_total` (with `payment_intent_data`) is
        confirmed. Success completes the session (`paid`); with `async_payment` the intent stays `processing` and the
        session completes `unpaid` until `settle_async_checkout`. A decline leaves the session open."""
        with self._lock:
            session = self._get(self.checkout_sessions, "checkout.session", session_id)
            if session["status"] != "open":
                raise ValueError(f"{session_id} is {session['status']}")
            intent = self._checkout_intent(session)
            if async_payment:
                intent["payment_method"] = self._payment_method(payment_method, "payment_method")
                self._start_processing(_NO_REQUEST, intent)
            else:
                self._confirm(_NO_REQUEST, intent, payment_method, server_side=False)
                if intent["status"] == "requires_action":  # the page runs 3-D Secure and the customer passes it
                    self._succeed(_NO_REQUEST, intent, self._new_charge(intent))
            if intent["status"] in {"succeeded", "requires_capture", "processing"}:
                paid = intent["status"] == "succeeded"
                session.update(status="complete", payment_status="paid" if paid else "unpaid", url=None)
                self._emit(_NO_REQUEST, "checkout.session.completed", session)
            return copy.deepcopy(session)

    def settle_async_checkout(self, session_id: str, succeeded: bool = True) -> Obj:
        with self._lock:
            session = self._get(self.checkout_sessions, "checkout.session", session_id)
            if session["status"] != "complete" or session["payment_status"] != "unpaid":
                raise ValueError(f"{session_id} is {session['status']}/{session['payment_status']}")
            self.settle_processing(session["payment_intent"], succeeded)
            if succeeded:
                session["payment_status"] = "paid"
                self._emit(_NO_REQUEST, "checkout.session.async_payment_succeeded", session)
            else:
                self._emit(_NO_REQUEST, "checkout.session.async_payment_failed", session)
            return copy.deepcopy(session)

    def expire_checkout(self, session_id: str) -> Obj:
        with self._lock:
            session = self._get(self.checkout_sessions, "checkout.session", session_id)
            self._expire(_NO_REQUEST, session)
            return copy.deepcopy(session)

    def reverse_transfer(self, transfer_id: str, amount: int | None = None) -> Obj:
        """The platform reverses a transfer from the Dashboard (the same as `POST /v1/transfers/{id}/reversals`)."""
        with self._lock:
            return copy.deepcopy(
                self._reverse_transfer(_NO_REQUEST, {} if amount is None else {"amount": str(amount)}, transfer_id)
            )

    def settle_refund(self, refund_id: str, status: str = "succeeded", failure_reason: str = "declined") -> Obj:
        """A pending refund settles. A failed refund gives its amount back to the charge."""
        with self._lock:
            refund = self._get(self.refunds, "refund", refund_id)
            if refund["status"] != "pending" or status not in {"succeeded", "failed"}:
                raise ValueError(f"{refund_id} is {refund['status']}; cannot settle it as {status}")
            if status == "failed":
                self._fail_refund(refund, failure_reason)
            else:
                refund["status"] = status
                self._emit(_NO_REQUEST, "charge.refund.updated", refund, previous={"status": "pending"})
                self._emit(_NO_REQUEST, "refund.updated", refund, previous={"status": "pending"})
            return copy.deepcopy(refund)

    def fail_refund(self, refund_id: str, failure_reason: str = "expired_or_canceled_card") -> Obj:
        """A refund fails after the fact: one that `succeeded` (Stripe reports such failures days or weeks later,
        e.g. the card was closed) or one still `pending`. Its amount returns to the platform's balance (a
        `failure_balance_transaction`) and to the charge; Stripe sends `charge.refund.updated`, `refund.updated`
        and `refund.failed`, each with the refund, as its docs on failed refunds describe."""
        with self._lock:
            refund = self._get(self.refunds, "refund", refund_id)
            if refund["status"] not in {"pending", "succeeded"}:
                raise ValueError(f"{refund_id} is {refund['status']}; it cannot fail")
            self._fail_refund(refund, failure_reason)
            return copy.deepcopy(refund)

    def _fail_refund(self, refund: Obj, failure_reason: str) -> None:
        previous = {"status": refund["status"]}
        charge = self.charges[refund["charge"]]
        charge["amount_refunded"] -= refund["amount"]
        charge["refunded"] = False
        refund.update(status="failed", failure_reason=failure_reason, failure_balance_transaction=_new_id("txn_"))
        self._emit(_NO_REQUEST, "charge.refund.updated", refund, previous=previous)
        self._emit(_NO_REQUEST, "refund.updated", refund, previous=previous)
        self._emit(_NO_REQUEST, "refund.failed", refund)

    # ------------------------------------------------------------------------------------- events, webhooks

    def events_of(self, event_type: str) -> list[Obj]:
        with self._lock:
            return [event for event in self.events if event["type"] == event_type]

    @staticmethod
    def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
        """The `Stripe-Signature` header Stripe sends: `t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<payload>">`."""
        ts = _now() if timestamp is None else timestamp
        signature = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
        return f"t={ts},v1={signature}"

    def signed_delivery(self, event: Obj, secret: str, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers of Stripe's POST of `event` to a webhook endpoint signed with `secret`."""
        body = _dumps(event)
        headers = {
            "Stripe-Signature": self.sign(body, secret, timestamp),
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        return body, headers

    def _emit(self, ctx: _Ctx, event_type: str, obj: Obj, previous: Obj | None = None) -> None:
        data: Obj = {"object": copy.deepcopy(obj)}
        if previous:
            data["previous_attributes"] = previous
        event = self._new("evt_", "event", api_version=self.api_version, data=data, pending_webhooks=1)
        event.update(request={"id": ctx.request_id, "idempotency_key": ctx.idempotency_key}, type=event_type)
        del event["metadata"]
        self.events.append(event)

    # ------------------------------------------------------------------------------------------ serving

    def _serve(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply | None:
        """Every request, after `latency_ms` (counted in `in_flight` while it is served)."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_ms and self._closing.wait(self.latency_ms / 1000):
                return None  # closing: dropped, as a hung request is
            return super()._serve(method, target, headers, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _receive(self, received: Received) -> tuple[_Incoming, RecordedRequest]:
        method, path, key = received.method, received.path, received.key
        params: Obj = {}
        parse_error = None
        try:
            params = parse_form(received.body.decode() if method == "POST" else received.query)
        except (UnicodeDecodeError, ValueError) as error:
            parse_error = _invalid(str(error))
        incoming = _Incoming(method, path, params, key, _new_id("req_", 14), received.lower, parse_error)
        return incoming, RecordedRequest(method, path, params, key, received.headers)

    def _outside_api(self, method: str, path: str) -> _Reply | None:
        if method == "POST" and path.startswith("/_fake/"):
            return self._customer_action(path)
        if method == "GET" and not path.startswith("/v1/"):
            return self._hosted_page(path)
        return None

    def _reply(self, request: _Incoming, status: int, body: bytes) -> _Reply:
        return request.reply(status, body)

    def _authenticate(self, incoming: _Incoming) -> None:
        scheme, _, key = incoming.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            message = (
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
            )
            raise _error(401, message)
        if key != self.secret_key:
            raise _error(401, f"Invalid API Key provided: {key[:8]}{'*' * 4}{key[-4:]}")
        if incoming.parse_error:
            raise incoming.parse_error

    def _execute(self, incoming: _Incoming) -> _Reply:
        """Run the request once per idempotency key; replay the saved answer for the same key and parameters."""
        store_key = (self.secret_key, incoming.idempotency_key) if incoming.idempotency_key else None
        stored = self._stored.get(store_key) if store_key else None
        if stored:
            retry = (
                f"Try using a key other than '{incoming.idempotency_key}' if you meant to execute a different request."
            )
            if (stored.method, stored.path) != (incoming.method, incoming.path):
                message = (
                    "Keys for idempotent requests can only be used for the same endpoint they were first used for "
                    f"('{stored.path}' vs '{incoming.path}'). {retry}"
                )
                raise _error(400, message, type_="idempotency_error")
            if stored.params != incoming.params:
                message = (
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. {retry}"
                )
                raise _error(400, message, type_="idempotency_error")
            replayed = {"Idempotent-Replayed": "true", "Original-Request": stored.request_id}
            return incoming.reply(stored.status, stored.body, replayed)
        try:
            status, body = 200, _dumps(self._route(incoming))
        except StripeApiError as error:
            if not error.stored:
                raise
            status, body = error.status, error.wire()
        if store_key:
            saved = _Stored(incoming.method, incoming.path, incoming.params, status, body, incoming.request_id)
            self._stored[store_key] = saved
        return incoming.reply(status, body)

    def _route(self, incoming: _Incoming) -> Obj:
        for route in self._routes:
            match = route.pattern.fullmatch(incoming.path)
            if route.method == incoming.method and match:
                known = _known_params(route.params_type)
                for name in incoming.params:
                    if name not in known:
                        hint = f" (this API version takes {_RENAMED[name]})" if name in _RENAMED else ""
                        raise _invalid(f"Received unknown parameter: {name}{hint}", name, "parameter_unknown")
                result = route.handler(incoming.ctx, incoming.params, *match.groups())
                return self._render(result, incoming.params.get("expand"))
        message = (
            f"Unrecognized request URL ({incoming.method}: {incoming.path}). Please see https://stripe.com/docs or "
            "we can help at https://support.stripe.com/."
        )
        raise _error(404, message)

    def _build_routes(self) -> list[_Route]:
        table: list[tuple[str, str, Callable[..., Obj], str]] = [
            ("POST", "/v1/customers", self._create_customer, "CustomerCreateParams"),
            ("GET", "/v1/customers/([^/]+)", self._retrieve("customers", "customer"), "CustomerRetrieveParams"),
            ("POST", "/v1/payment_intents", self._create_intent, "PaymentIntentCreateParams"),
            (
                "GET",
                "/v1/payment_intents/([^/]+)",
                self._retrieve("payment_intents", "payment_intent"),
                "PaymentIntentRetrieveParams",
            ),
            ("POST", "/v1/payment_intents/([^/]+)/confirm", self._confirm_intent, "PaymentIntentConfirmParams"),
            ("POST", "/v1/payment_intents/([^/]+)/capture", self._capture_intent, "PaymentIntentCaptureParams"),
            ("POST", "/v1/payment_intents/([^/]+)/cancel", self._cancel_intent, "PaymentIntentCancelParams"),
            ("GET", "/v1/charges/([^/]+)", self._retrieve("charges", "charge"), "ChargeRetrieveParams"),
            ("POST", "/v1/refunds", self._create_refund, "RefundCreateParams"),
            ("GET", "/v1/refunds", self._list_refunds, "RefundListParams"),
            ("GET", "/v1/refunds/([^/]+)", self._retrieve("refunds", "refund"), "RefundRetrieveParams"),
            ("POST", "/v1/checkout/sessions", self._create_session, "checkout.SessionCreateParams"),
            (
                "GET",
                "/v1/checkout/sessions/([^/]+)",
                self._retrieve("checkout_sessions", "checkout.session"),
                "checkout.SessionRetrieveParams",
            ),
            ("POST", "/v1/checkout/sessions/([^/]+)/expire", self._expire_session, "checkout.SessionExpireParams"),
            ("POST", "/v1/transfers", self._create_transfer, "TransferCreateParams"),
            ("GET", "/v1/transfers/([^/]+)", self._retrieve("transfers", "transfer"), "TransferRetrieveParams"),
            ("POST", "/v1/transfers/([^/]+)/reversals", self._reverse_transfer, "TransferReversalCreateParams"),
            ("GET", "/v1/disputes", self._list_disputes, "DisputeListParams"),
            ("GET", "/v1/disputes/([^/]+)", self._retrieve("disputes", "dispute"), "DisputeRetrieveParams"),
            ("POST", "/v1/disputes/([^/]+)/close", self._close_dispute_api, "DisputeCloseParams"),
            ("GET", "/v1/events", self._list_events, "EventListParams"),
            ("GET", "/v1/events/([^/]+)", self._retrieve_event, "EventRetrieveParams"),
        ]
        return [_Route(method, re.compile(pattern), handler, kind) for method, pattern, handler, kind in table]

    def _customer_action(self, path: str) -> _Reply:
        """What the customer does in a browser, for a person driving the fake by hand (the runner below):
        `POST /_fake/checkout/{id}/pay` and `POST /_fake/payment_intents/{id}/pay` (with the test card 4242); what
        the cardholder's bank does: `POST /_fake/charges/{id}/dispute` (or `/_fake/payment_intents/{id}/dispute`)
        opens a chargeback, `POST /_fake/disputes/{id}/win` and `/lose` close it; and what Stripe does later:
        `POST /_fake/refunds/{id}/fail` (a refund fails, late or pending: `fail_refund`)."""
        parts = path.strip("/").split("/")
        try:
            if parts[1:2] == ["checkout"] and parts[3:] == ["pay"]:
                done = self.pay_checkout(parts[2])
            elif parts[1:2] == ["payment_intents"] and parts[3:] == ["pay"]:
                done = self.customer_pays(parts[2])
            elif parts[1:2] in (["charges"], ["payment_intents"]) and parts[3:] == ["dispute"]:
                done = self.open_dispute(parts[2])
            elif parts[1:2] == ["disputes"] and parts[3:] in (["win"], ["lose"]):
                done = self.close_dispute(parts[2], won=parts[3] == "win")
            elif parts[1:2] == ["refunds"] and parts[3:] == ["fail"]:
                done = self.fail_refund(parts[2])
            else:
                return _Reply(404, {"Content-Type": "application/json"}, b'{"error": "unknown action"}')
        except (ValueError, StripeApiError) as exc:
            return _Reply(400, {"Content-Type": "application/json"}, _dumps({"error": str(exc)}))
        return _Reply(200, {"Content-Type": "application/json"}, _dumps(done))

    def _hosted_page(self, path: str) -> _Reply:
        """Stubs of the pages a customer visits (Checkout's `url`, 3-D Secure's `redirect_to_url`): tests act with
        `pay_checkout` / `complete_action` instead."""
        _, kind, object_id = [*path.split("/"), "", ""][:3]
        with self._lock:
            found = (self.checkout_sessions if kind == "checkout" else self.payment_intents).get(object_id)
            text = (
                f"{found['status']} {found['amount'] if 'amount' in found else found['amount_total']}" if found else ""
            )
        page = f"<!doctype html><title>FakeStripe</title><p>{kind} {object_id}: {text or 'not found'}</p>".encode()
        return _Reply(200 if found else 404, {"Content-Type": "text/html; charset=utf-8"}, page)

    # ------------------------------------------------------------------------------------- object helpers

    def _new(self, prefix: str, object_name: str, **fields: Any) -> Obj:
        obj = {"id": _new_id(prefix), "object": object_name, "created": _now(), "livemode": False, "metadata": {}}
        if object_name in _WITHOUT_LIVEMODE:
            del obj["livemode"]
        return obj | fields

    @staticmethod
    def _get(store: dict[str, Obj], kind: str, object_id: str, param: str | None = None) -> Obj:
        found = store.get(object_id)
        if found is None:
            raise _no_such(kind, object_id, param)
        return found

    def _retrieve(self, store: str, kind: str) -> Callable[[_Ctx, Obj, str], Obj]:
        def retrieve(ctx: _Ctx, params: Obj, object_id: str) -> Obj:
            return self._get(getattr(self, store), kind, object_id)

        return retrieve

    def _in_status(self, intent_id: str, status: str) -> Obj:
        intent = self._get(self.payment_intents, "payment_intent", intent_id)
        if intent["status"] != status:
            raise ValueError(f"{intent_id} is {intent['status']}, not {status}")
        return intent

    def _lookup(self, object_id: str) -> Obj | None:
        stores = {"pi_": self.payment_intents, "ch_": self.charges, "re_": self.refunds, "cus_": self.customers}
        stores |= {"cs_": self.checkout_sessions, "tr_": self.transfers, "pm_": self.payment_methods}
        stores |= {"dp_": self.disputes}
        for prefix, store in stores.items():
            if object_id.startswith(prefix):
                return store.get(object_id)
        return None

    def _render(self, obj: Obj, expand: Any) -> Obj:
        """A copy of `obj` for the wire, with `expand` paths (`latest_charge`, `data.payment_intent`) inlined."""
        result = copy.deepcopy(obj)
        paths = expand if isinstance(expand, list) else [expand] if expand else []
        for path in paths:
            self._expand(result, str(path).split("."), str(path))
        return result

    def _expand(self, node: Any, parts: list[str], path: str) -> None:
        head, rest = parts[0], parts[1:]
        if not isinstance(node, dict) or head not in node:
            raise _invalid(f"This property cannot be expanded ({path}).", "expand")
        value = node[head]
        if isinstance(value, list) and rest:
            for item in value:
                self._expand(item, rest, path)
            return
        if isinstance(value, str):
            found = self._lookup(value)
            if found is None:
                raise _invalid(f"This property cannot be expanded ({path}).", "expand")
            node[head] = value = copy.deepcopy(found)
        if rest and value is not None:
            self._expand(value, rest, path)

    def _page(self, items: list[Obj], params: Obj, url: str) -> Obj:
        limit = _int(params, "limit", minimum=1) or 10
        if limit > 100:
            raise _invalid("This value must be less than or equal to 100.", "limit", "parameter_invalid_integer")
        after = _str(params, "starting_after")
        if after:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}

    def _payment_method(self, reference: str, param: str) -> str:
        """The id of the PaymentMethod a confirm names: an existing `pm_…`, or a new one cloned from a test
        PaymentMethod (`pm_card_visa`) or a test card number, as Stripe does."""
        if reference in self.payment_methods:
            return reference
        number = _TEST_PAYMENT_METHODS.get(reference, reference)
        card = _CARDS.get(number)
        if card is None:
            raise _no_such("PaymentMethod", reference, param)
        details = {"brand": card.brand, "last4": card.last4, "exp_month": 12, "exp_year": 2034, "funding": "credit"}
        method = self._new("pm_", "payment_method", type="card", card=details, customer=None)
        method["billing_details"] = {"address": None, "email": None, "name": None, "phone": None}
        self.payment_methods[method["id"]] = method
        self._card_numbers[method["id"]] = number
        return method["id"]

    # -------------------------------------------------------------------------------------------- customers

    def _create_customer(self, ctx: _Ctx, params: Obj) -> Obj:
        customer = self._new(
            "cus_",
            "customer",
            metadata=_metadata(params),
            email=_str(params, "email"),
            name=_str(params, "name"),
            description=_str(params, "description"),
            phone=_str(params, "phone"),
            balance=0,
            currency=None,
            default_source=None,
            delinquent=False,
        )
        self.customers[customer["id"]] = customer
        self._emit(ctx, "customer.created", customer)
        return customer

    def _customer_ref(self, params: Obj, *, where: str = "") -> str | None:
        customer = _str(params, "customer", where=where)
        if customer:
            self._get(self.customers, "customer", customer, _label("customer", where))
        return customer

    # -------------------------------------------------------------------------------------- payment intents

    def _create_intent(self, ctx: _Ctx, params: Obj) -> Obj:
        amount = _int(params, "amount", required=True) or 0
        currency = _currency(params)
        _check_amount(amount, currency, "amount")
        manual_types = params.get("allowed_payment_method_types")
        automatic = params.get("automatic_payment_methods")
        if manual_types is not None and automatic is not None:
            message = (
                "You may only specify one of these parameters: allowed_payment_method_types, automatic_payment_methods."
            )
            raise _invalid(message)
        if manual_types is not None:
            if not isinstance(manual_types, list) or not manual_types:
                raise _invalid("Invalid array", "allowed_payment_method_types")
            automatic_methods = None
        else:
            if automatic is not None and not isinstance(automatic, dict):
                raise _invalid("Invalid object", "automatic_payment_methods")
            automatic = automatic or {}
            where = "automatic_payment_methods"
            if automatic and "enabled" not in automatic:
                raise _missing_param(f"{where}[enabled]")
            enabled = automatic == {} or _bool(automatic, "enabled", where=where)
            redirects = _enum(automatic, "allow_redirects", ("always", "never"), default="always", where=where)
            automatic_methods = {"enabled": True, "allow_redirects": redirects} if enabled else None
        capture_methods = ("automatic", "automatic_async", "manual")
        method = _str(params, "payment_method")
        payment_method = self._payment_method(method, "payment_method") if method else None
        intent = self._new_intent(
            ctx,
            amount=amount,
            currency=currency,
            allowed_payment_method_types=manual_types,
            automatic_payment_methods=automatic_methods,
            capture_method=_enum(params, "capture_method", capture_methods, default="automatic_async"),
            customer=self._customer_ref(params),
            description=_str(params, "description"),
            metadata=_metadata(params),
            payment_method=payment_method,
            payment_method_types=manual_types or ["card"],
            receipt_email=_str(params, "receipt_email"),
            status="requires_confirmation" if payment_method else "requires_payment_method",
            transfer_group=_str(params, "transfer_group"),
        )
        if return_url := _str(params, "return_url"):
            self._return_urls[intent["id"]] = return_url
        if _bool(params, "confirm"):
            self._confirm(ctx, intent, None, server_side=True)
        return intent

    def _new_intent(self, ctx: _Ctx, **fields: Any) -> Obj:
        intent = self._new("pi_", "payment_intent", amount_capturable=0, amount_received=0, canceled_at=None)
        intent |= {"cancellation_reason": None, "client_secret": None, "confirmation_method": "automatic"}
        intent |= {"last_payment_error": None, "latest_charge": None, "next_action": None, "payment_method": None}
        intent |= {"status": "requires_payment_method"} | fields
        intent["client_secret"] = f"{intent['id']}_secret_{_new_id('', 25)}"
        self.payment_intents[intent["id"]] = intent
        self._emit(ctx, "payment_intent.created", intent)
        return intent

    def _confirm_intent(self, ctx: _Ctx, params: Obj, intent_id: str) -> Obj:
        intent = self._get(self.payment_intents, "payment_intent", intent_id)
        if return_url := _str(params, "return_url"):
            self._return_urls[intent_id] = return_url
        if capture_method := _enum(params, "capture_method", ("automatic", "automatic_async", "manual")):
            intent["capture_method"] = capture_method
        self._confirm(ctx, intent, _str(params, "payment_method"), server_side=True)
        return intent

    def _confirm(self, ctx: _Ctx, intent: Obj, payment_method: str | None, *, server_side: bool) -> None:
        if intent["status"] not in _CONFIRMABLE:
            raise _unexpected_state(
                f"You cannot confirm this PaymentIntent because it has a status of {intent['status']}. Only a "
                "PaymentIntent with one of the following statuses may be confirmed: requires_confirmation, "
                "requires_payment_method, requires_action."
            )
        if payment_method:
            intent["payment_method"] = self._payment_method(payment_method, "payment_method")
        if intent["payment_method"] is None:
            message = (
                "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update "
                "the PaymentIntent with a payment method and then confirm it again, or confirm it again directly "
                "with a payment method."
            )
            raise _invalid(message, "payment_method", "parameter_missing")
        automatic = intent["automatic_payment_methods"]
        # a browser confirm (Stripe.js) always carries a return_url; a server-side one must name it
        redirects = automatic is not None and automatic["allow_redirects"] == "always"
        if server_side and redirects and intent["id"] not in self._return_urls:
            raise _invalid(_RETURN_URL_REQUIRED)
        card = _CARDS[self._card_numbers[intent["payment_method"]]]
        intent["last_payment_error"] = None
        if card.authenticate:
            intent.update(status="requires_action", next_action=self._next_action(intent, server_side=server_side))
            self._emit(ctx, "payment_intent.requires_action", intent)
        elif card.decline:
            self._decline(ctx, intent, card.decline, raise_error=server_side)
        else:
            self._succeed(ctx, intent, self._new_charge(intent))

    def _next_action(self, intent: Obj, *, server_side: bool) -> Obj:
        return_url = self._return_urls.get(intent["id"])
        url = f"{self.url}/3ds/{intent['id']}"
        if server_side and return_url is None:  # without a return_url only Stripe.js can run the challenge
            return {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url}}
        return {"type": "redirect_to_url", "redirect_to_url": {"url": url, "return_url": return_url}}

    def _decline(self, ctx: _Ctx, intent: Obj, decline: tuple[str, str, str, str | None], *, raise_error: bool) -> None:
        code, decline_code, message, param = decline
        charge = self._new_charge(intent)
        charge.update(status="failed", failure_code=code, failure_message=message)
        error = _error(402, message, type_="card_error", code=code, param=param, stored=True)
        error.error |= {
            "charge": charge["id"],
            "decline_code": decline_code,
            "payment_method": copy.deepcopy(self.payment_methods[intent["payment_method"]]),
        }
        intent.update(status="requires_payment_method", payment_method=None, latest_charge=charge["id"])
        intent.update(last_payment_error=copy.deepcopy(error.error), next_action=None)
        self._emit(ctx, "charge.failed", charge)
        self._emit(ctx, "payment_intent.payment_failed", intent)
        if raise_error:
            error.error["payment_intent"] = copy.deepcopy(intent)
            raise error

    def _new_charge(self, intent: Obj) -> Obj:
        method = self.payment_methods[intent["payment_method"]]
        charge = self._new(
            "ch_",
            "charge",
            amount=intent["amount"],
            amount_captured=0,
            amount_refunded=0,
            balance_transaction=None,
            billing_details=copy.deepcopy(method["billing_details"]),  # the payment method's, as Stripe copies them
            captured=False,
            currency=intent["currency"],
            customer=intent["customer"],
            description=intent["description"],
            disputed=False,
            failure_code=None,
            failure_message=None,
            metadata=dict(intent["metadata"]),
            paid=False,
            payment_intent=intent["id"],
            payment_method=method["id"],
            payment_method_details={"type": "card", "card": copy.deepcopy(method["card"])},
            refunded=False,
            status="pending",
        )
        self.charges[charge["id"]] = charge
        intent["latest_charge"] = charge["id"]
        return charge

    def _succeed(self, ctx: _Ctx, intent: Obj, charge: Obj) -> None:
        """The payment is authorised: captured at once, or held (`requires_capture`) for manual capture."""
        manual = intent["capture_method"] == "manual"
        charge.update(status="succeeded", paid=True, captured=not manual)
        if not manual:
            charge.update(amount_captured=charge["amount"], balance_transaction=_new_id("txn_"))
        intent.update(latest_charge=charge["id"], next_action=None, last_payment_error=None)
        self._emit(ctx, "charge.succeeded", charge)
        if manual:
            intent.update(status="requires_capture", amount_capturable=intent["amount"])
            self._emit(ctx, "payment_intent.amount_capturable_updated", intent)
        else:
            intent.update(status="succeeded", amount_received=intent["amount"])
            self._emit(ctx, "payment_intent.succeeded", intent)

    def _start_processing(self, ctx: _Ctx, intent: Obj) -> None:
        self._new_charge(intent)
        intent.update(status="processing", next_action=None, last_payment_error=None)
        self._emit(ctx, "charge.pending", self.charges[intent["latest_charge"]])
        self._emit(ctx, "payment_intent.processing", intent)

    def _capture_intent(self, ctx: _Ctx, params: Obj, intent_id: str) -> Obj:
        intent = self._get(self.payment_intents, "payment_intent", intent_id)
        if intent["status"] != "requires_capture":
            raise _unexpected_state(
                f"This PaymentIntent could not be captured because it has a status of {intent['status']}. Only a "
                "PaymentIntent with one of the following statuses may be captured: requires_capture."
            )
        capturable = intent["amount_capturable"]
        amount = _int(params, "amount_to_capture", minimum=1)
        amount = capturable if amount is None else amount
        _check_units(amount, intent["currency"], "amount_to_capture")
        if amount > capturable:
            message = f"The amount_to_capture ({amount}) is greater than the amount_capturable ({capturable})."
            raise _error(400, message, code="amount_too_large", param="amount_to_capture", stored=True)
        intent["metadata"] = _updated_metadata(intent["metadata"], params)
        charge = self.charges[intent["latest_charge"]]
        charge.update(captured=True, amount_captured=amount, balance_transaction=_new_id("txn_"))
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        self._emit(ctx, "charge.captured", charge)
        if amount < charge["amount"]:  # Stripe refunds the uncaptured rest with a Refund object
            self._new_refund(ctx, charge, charge["amount"] - amount, reason=None, metadata={}, status="succeeded")
        self._emit(ctx, "payment_intent.succeeded", intent)
        return intent

    def _cancel_intent(self, ctx: _Ctx, params: Obj, intent_id: str) -> Obj:
        intent = self._get(self.payment_intents, "payment_intent", intent_id)
        reasons = ("abandoned", "duplicate", "fraudulent", "requested_by_customer")
        reason = _enum(params, "cancellation_reason", reasons)
        if intent_id in self._session_of and intent["status"] != "requires_capture":
            raise _unexpected_state(
                "You can only cancel a PaymentIntent created by a Checkout Session when it has a status of "
                "requires_capture. Expire the Checkout Session instead."
            )
        self._cancel(ctx, intent, reason)
        return intent

    def _cancel(self, ctx: _Ctx, intent: Obj, reason: str | None) -> None:
        if intent["status"] not in _CANCELABLE:
            raise _unexpected_state(
                f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}. Only a "
                "PaymentIntent with one of the following statuses may be canceled: requires_payment_method, "
                "requires_capture, requires_confirmation, requires_action, processing."
            )
        if intent["status"] == "requires_capture":  # the held amount is refunded (released) with a Refund object
            charge = self.charges[intent["latest_charge"]]
            self._new_refund(ctx, charge, intent["amount_capturable"], reason=None, metadata={}, status="succeeded")
        intent.update(status="canceled", canceled_at=_now(), cancellation_reason=reason, amount_capturable=0)
        intent["next_action"] = None
        self._emit(ctx, "payment_intent.canceled", intent)

    # ---------------------------------------------------------------------------------------------- refunds

    def _create_refund(self, ctx: _Ctx, params: Obj) -> Obj:
        charge = self._refundable_charge(params)
        # A charge with a chargeback open or lost cannot be refunded: the bank returns the money (error code
        # `charge_disputed`, https://docs.stripe.com/error-codes#charge-disputed). An inquiry still can be
        # (`is_charge_refundable`), and so can a charge whose dispute was won.
        if any(
            dispute["charge"] == charge["id"] and dispute["status"] in {"needs_response", "under_review", "lost"}
            for dispute in self.disputes.values()
        ):
            message = f"Charge {charge['id']} has been charged back; cannot issue a refund."
            raise _error(400, message, code="charge_disputed", stored=True)
        reason = _enum(params, "reason", ("duplicate", "fraudulent", "requested_by_customer"))
        metadata = _metadata(params)
        amount = _int(params, "amount", minimum=1)
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            message = f"Charge {charge['id']} has already been refunded."
            raise _error(400, message, code="charge_already_refunded", stored=True)
        amount = remaining if amount is None else amount
        _check_units(amount, charge["currency"], "amount")
        if amount > remaining:
            message = f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})"
            raise _error(400, message, code="amount_too_large", param="amount", stored=True)
        status = "pending" if self.refunds_pending else "succeeded"
        return self._new_refund(ctx, charge, amount, reason=reason, metadata=metadata, status=status)

    def _refundable_charge(self, params: Obj) -> Obj:
        intent_id = _str(params, "payment_intent")
        charge_id = _str(params, "charge")
        if not intent_id and not charge_id:
            message = "One of the following params should be provided for this request: payment_intent or charge."
            raise _invalid(message, code="parameter_missing")
        charge = self._get(self.charges, "charge", charge_id, "charge") if charge_id else None
        if intent_id:
            intent = self._get(self.payment_intents, "payment_intent", intent_id, "payment_intent")
            if charge and charge["payment_intent"] != intent_id:
                raise _invalid(f"Charge {charge_id} does not belong to PaymentIntent {intent_id}.", "charge")
            charge = charge or self.charges.get(intent["latest_charge"] or "")
        if charge is None or charge["status"] != "succeeded":
            message = f"This PaymentIntent ({intent_id}) does not have a successful charge to refund."
            raise _error(400, message, code="charge_not_refundable", stored=True)
        if not charge["captured"]:
            message = f"Charge {charge['id']} is uncaptured: cancel the PaymentIntent to release the authorization."
            raise _error(400, message, code="charge_not_refundable", stored=True)
        return charge

    def _new_refund(
        self, ctx: _Ctx, charge: Obj, amount: int, *, reason: str | None, metadata: dict[str, str], status: str
    ) -> Obj:
        refund = self._new(
            "re_",
            "refund",
            amount=amount,
            balance_transaction=_new_id("txn_"),
            charge=charge["id"],
            currency=charge["currency"],
            metadata=metadata,
            payment_intent=charge["payment_intent"],
            reason=reason,
            receipt_number=None,
            source_transfer_reversal=None,
            status=status,
            transfer_reversal=None,
        )
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._emit(ctx, "refund.created", refund)
        self._emit(ctx, "charge.refunded", charge)
        return refund

    def _list_refunds(self, ctx: _Ctx, params: Obj) -> Obj:
        intent_id = _str(params, "payment_intent")
        charge_id = _str(params, "charge")
        refunds = [
            refund
            for refund in reversed(self.refunds.values())
            if intent_id in {None, refund["payment_intent"]} and charge_id in {None, refund["charge"]}
        ]
        return self._page(refunds, params, "/v1/refunds")

    # ------------------------------------------------------------------------------------ checkout sessions

    def _create_session(self, ctx: _Ctx, params: Obj) -> Obj:
        mode = _enum(params, "mode", ("payment", "setup", "subscription"))
        if mode is None:
            raise _missing_param("mode")
        if mode != "payment":
            raise _invalid("FakeStripe supports Checkout Sessions in mode=payment only.", "mode")
        currency, total = self._checkout_total(params.get("line_items"))
        now = _now()
        expires_at = _int(params, "expires_at")
        if expires_at is None:
            expires_at = now + 24 * 3600
        elif not now + 30 * 60 <= expires_at <= now + 24 * 3600:
            message = "The `expires_at` timestamp must be between 30 minutes and 24 hours after the session's creation."
            raise _invalid(message, "expires_at")
        intent_data = params.get("payment_intent_data", {})
        if not isinstance(intent_data, dict):
            raise _invalid("Invalid object", "payment_intent_data")
        _metadata(intent_data, where="payment_intent_data")
        methods = ("automatic", "automatic_async", "manual")
        _enum(intent_data, "capture_method", methods, where="payment_intent_data")
        session = self._new(
            "cs_test_",
            "checkout.session",
            amount_subtotal=total,
            amount_total=total,
            automatic_tax={"enabled": False, "liability": None, "provider": None, "status": None},
            cancel_url=_str(params, "cancel_url"),
            client_reference_id=_str(params, "client_reference_id"),
            client_secret=None,
            currency=currency,
            customer=self._customer_ref(params),
            customer_email=_str(params, "customer_email"),
            custom_fields=[],
            custom_text={
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            expires_at=expires_at,
            metadata=_metadata(params),
            mode=mode,
            payment_intent=None,
            payment_method_types=["card"],
            payment_status="unpaid",
            shipping_options=[],
            status="open",
            success_url=_str(params, "success_url"),
            ui_mode="hosted_page",  # its name in the pinned API version (older ones: `hosted`)
            url=None,
        )
        session["url"] = f"{self.url}/checkout/{session['id']}"
        self.checkout_sessions[session["id"]] = session
        self._intent_data[session["id"]] = intent_data
        return session

    @staticmethod
    def _checkout_total(items: Any) -> tuple[str, int]:
        if not isinstance(items, list) or not items:
            raise _missing_param("line_items")
        currencies, total = set(), 0
        for index, item in enumerate(items):
            where = f"line_items[{index}]"
            if not isinstance(item, dict):
                raise _invalid("Invalid object", where)
            if "price" in item:
                raise _no_such("price", str(item["price"]), f"{where}[price]")
            quantity = _int(item, "quantity", required=True, minimum=1, where=where) or 0
            price = item.get("price_data")
            if not isinstance(price, dict):
                raise _missing_param(f"{where}[price_data]")
            where = f"{where}[price_data]"
            currencies.add(_currency(price, where=where))
            unit_amount = _int(price, "unit_amount", required=True, minimum=0, where=where) or 0
            product = price.get("product_data")
            if not isinstance(product, dict) or not product.get("name"):
                raise _missing_param(f"{where}[product_data][name]")
            total += unit_amount * quantity
        if len(currencies) > 1:
            raise _invalid("All line items must use the same currency.", "line_items")
        currency = currencies.pop()
        _check_amount(total, currency, "line_items")
        return currency, total

    def _checkout_intent(self, session: Obj) -> Obj:
        """The session's PaymentIntent: made at the customer's first attempt, reused after a decline."""
        if session["payment_intent"]:
            return self.payment_intents[session["payment_intent"]]
        data = self._intent_data[session["id"]]
        intent = self._new_intent(
            _NO_REQUEST,
            amount=session["amount_total"],
            currency=session["currency"],
            allowed_payment_method_types=None,
            automatic_payment_methods=None,
            capture_method=data.get("capture_method", "automatic_async"),
            customer=session["customer"],
            description=data.get("description"),
            metadata=_metadata(data),
            payment_method_types=["card"],
            receipt_email=None,
            transfer_group=data.get("transfer_group"),
        )
        self._session_of[intent["id"]] = session["id"]
        session["payment_intent"] = intent["id"]
        return intent

    def _expire_session(self, ctx: _Ctx, params: Obj, session_id: str) -> Obj:
        session = self._get(self.checkout_sessions, "checkout.session", session_id)
        self._expire(ctx, session)
        return session

    def _expire(self, ctx: _Ctx, session: Obj) -> None:
        if session["status"] != "open":
            message = (
                f'Only Checkout Sessions with a status in ["open"] can be expired. This one is {session["status"]}.'
            )
            raise _error(400, message, param="session", stored=True)
        intent = self.payment_intents.get(session["payment_intent"] or "")
        if intent and intent["status"] in _CANCELABLE:
            self._cancel(ctx, intent, "abandoned")
        session.update(status="expired", url=None)
        self._emit(ctx, "checkout.session.expired", session)

    # -------------------------------------------------------------------------------------- transfers, events

    def _create_transfer(self, ctx: _Ctx, params: Obj) -> Obj:
        amount = _int(params, "amount", required=True, minimum=1)
        currency = _currency(params)
        destination = _str(params, "destination", required=True) or ""
        if not destination.startswith("acct_"):
            raise _no_such("destination", destination, "destination")
        if destination in self.unpayable_accounts:
            message = (
                "Your destination account needs to have at least one of the following capabilities enabled: "
                "transfers, crypto_transfers, legacy_payments"
            )
            raise _invalid(message, "destination", "insufficient_capabilities_for_transfer")
        transfer = self._new(
            "tr_",
            "transfer",
            amount=amount,
            amount_reversed=0,
            balance_transaction=_new_id("txn_"),
            currency=currency,
            description=_str(params, "description"),
            destination=destination,
            destination_payment=_new_id("py_"),
            metadata=_metadata(params),
            reversals=None,
            reversed=False,
            source_transaction=_str(params, "source_transaction"),
            source_type="card",
            transfer_group=_str(params, "transfer_group"),
        )
        transfer["reversals"] = {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/transfers/{transfer['id']}/reversals",
        }
        self.transfers[transfer["id"]] = transfer
        self._emit(ctx, "transfer.created", transfer)
        return transfer

    def _reverse_transfer(self, ctx: _Ctx, params: Obj, transfer_id: str) -> Obj:
        """`POST /v1/transfers/{id}/reversals`: the money comes back from the connected account (all of what is left
        by default). A transfer reversed in full has `reversed: true`; each reversal sends `transfer.reversed`."""
        transfer = self._get(self.transfers, "transfer", transfer_id)
        left = transfer["amount"] - transfer["amount_reversed"]
        amount = _int(params, "amount", minimum=1)
        amount = left if amount is None else amount
        if left <= 0:
            raise _invalid(f"Transfer {transfer_id} has already been reversed.")
        if amount > left:
            raise _invalid(
                f"Amount ({amount}) is greater than the unreversed amount ({left}) of the transfer.", "amount"
            )
        reversal = self._new(
            "trr_",
            "transfer_reversal",
            amount=amount,
            balance_transaction=_new_id("txn_"),
            currency=transfer["currency"],
            destination_payment_refund=_new_id("pyr_"),
            metadata=_metadata(params),
            source_refund=None,
            transfer=transfer_id,
        )
        del reversal["livemode"]  # a reversal has none (stripe.TransferReversal)
        previous = {"amount_reversed": transfer["amount_reversed"], "reversed": transfer["reversed"]}
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        transfer["reversals"]["data"].insert(0, reversal)
        self._emit(ctx, "transfer.reversed", transfer, previous=previous)
        return reversal

    # --------------------------------------------------------------------------------------------- disputes
    # https://docs.stripe.com/disputes/how-disputes-work: a chargeback withdraws the disputed amount and a dispute fee
    # from the balance at once (one balance transaction); a dispute won reinstates the amount (a second one) while
    # the dispute fee stays charged; an inquiry (`warning_*`) moves no money unless it escalates.

    def open_dispute(
        self,
        charge_or_intent: str,
        *,
        reason: str = "fraudulent",
        amount: int | None = None,
        inquiry: bool = False,
        fee: int = DISPUTE_FEE,
    ) -> Obj:
        """The cardholder's bank disputes a captured charge: `charge.dispute.created`, then (a chargeback, not an
        inquiry) `charge.dispute.funds_withdrawn` with a balance transaction for the amount and the fee."""
        with self._lock:
            if charge_or_intent.startswith("pi_"):
                intent = self._get(self.payment_intents, "payment_intent", charge_or_intent)
                charge_or_intent = intent["latest_charge"] or ""
            charge = self._get(self.charges, "charge", charge_or_intent)
            if charge["status"] != "succeeded" or not charge["captured"] or charge.get("disputed"):
                raise ValueError(f"{charge['id']} cannot be disputed")
            amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
            method = self.payment_methods[charge["payment_method"]]["card"]
            dispute = self._new(
                "dp_",
                "dispute",
                amount=amount,
                balance_transactions=[],
                charge=charge["id"],
                currency=charge["currency"],
                enhanced_eligibility_types=[],
                evidence=dict.fromkeys(_EVIDENCE_FIELDS) | {"enhanced_evidence": {}},
                evidence_details={
                    "due_by": _now() + 7 * 86400,
                    "enhanced_eligibility": {},
                    "has_evidence": False,
                    "past_due": False,
                    "submission_count": 0,
                    "submission_method": "not_submitted",
                },
                intended_submission_method=None,
                is_charge_refundable=inquiry,
                network_reason_code="10.4" if reason == "fraudulent" else "13.1",
                payment_intent=charge["payment_intent"],
                payment_method_details={
                    "type": "card",
                    "card": {
                        "brand": method["brand"],
                        "network": method["brand"],
                        "case_type": "inquiry" if inquiry else "chargeback",
                        "network_reason_code": "10.4" if reason == "fraudulent" else "13.1",
                    },
                },
                reason=reason,
                status="warning_needs_response" if inquiry else "needs_response",
            )
            self.disputes[dispute["id"]] = dispute
            charge["disputed"] = True
            self._emit(_NO_REQUEST, "charge.dispute.created", dispute)
            if not inquiry:
                self._withdraw_disputed(dispute, fee)
            return copy.deepcopy(dispute)

    def escalate_dispute(self, dispute_id: str, fee: int = DISPUTE_FEE) -> Obj:
        """An inquiry becomes a chargeback: `needs_response`, and the funds are withdrawn."""
        with self._lock:
            dispute = self._get(self.disputes, "dispute", dispute_id)
            if dispute["status"] not in {"warning_needs_response", "warning_under_review"}:
                raise ValueError(f"{dispute_id} is {dispute['status']}")
            previous = {"status": dispute["status"]}
            dispute.update(status="needs_response", is_charge_refundable=False)
            dispute["payment_method_details"]["card"]["case_type"] = "chargeback"
            self._emit(_NO_REQUEST, "charge.dispute.updated", dispute, previous)
            self._withdraw_disputed(dispute, fee)
            return copy.deepcopy(dispute)

    def submit_evidence(self, dispute_id: str) -> Obj:
        """The merchant submits evidence: `under_review` (`warning_under_review` for an inquiry)."""
        with self._lock:
            dispute = self._get(self.disputes, "dispute", dispute_id)
            following = {"needs_response": "under_review", "warning_needs_response": "warning_under_review"}
            if dispute["status"] not in following:
                raise ValueError(f"{dispute_id} is {dispute['status']}")
            previous = {"status": dispute["status"]}
            dispute["status"] = following[dispute["status"]]
            dispute["evidence_details"].update(has_evidence=True, submission_count=1, submission_method="manual")
            self._emit(_NO_REQUEST, "charge.dispute.updated", dispute, previous)
            return copy.deepcopy(dispute)

    def close_dispute(self, dispute_id: str, *, won: bool) -> Obj:
        """The bank decides: `won` (the funds are reinstated, the fee is not) or `lost` (nothing comes back); an
        inquiry closes as `warning_closed`."""
        with self._lock:
            dispute = self._get(self.disputes, "dispute", dispute_id)
            self._close_dispute(dispute, won=won)
            return copy.deepcopy(dispute)

    def _close_dispute(self, dispute: Obj, *, won: bool) -> None:
        if dispute["status"] in {"won", "lost", "warning_closed", "prevented"}:
            raise _error(400, f"This dispute is already closed ({dispute['id']}).", code="dispute_already_closed")
        previous = {"status": dispute["status"]}
        dispute["status"] = "warning_closed" if dispute["status"].startswith("warning_") else "won" if won else "lost"
        self._emit(_NO_REQUEST, "charge.dispute.closed", dispute, previous)
        if dispute["status"] == "won" and dispute["balance_transactions"]:
            self._balance_transaction(dispute, dispute["amount"], 0, "dispute_reversal", "Chargeback reversal")
            self._emit(_NO_REQUEST, "charge.dispute.funds_reinstated", dispute)

    def balance_in(self, currency: str, rate: str) -> None:
        """Keep the platform's balance in `currency` from now on: a dispute's funds are converted at `rate` (one unit
        of the charge's currency in `currency`) and its fee (`fee`, in `currency`'s units) charged in it."""
        self.balance = (currency.lower(), Decimal(rate))

    def _withdraw_disputed(self, dispute: Obj, fee: int) -> None:
        self._balance_transaction(dispute, -dispute["amount"], fee, "dispute", "Chargeback withdrawal")
        self._emit(_NO_REQUEST, "charge.dispute.funds_withdrawn", dispute)

    def _balance_transaction(self, dispute: Obj, amount: int, fee: int, category: str, description: str) -> None:
        details = []
        currency: str = dispute["currency"]
        rate: Decimal | None = None
        if self.balance is not None and self.balance[0] != currency:  # converted into the balance's currency
            currency, rate = self.balance
            amount = int((amount * rate).to_integral_value(ROUND_HALF_EVEN))
        if fee:
            details = [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": "Dispute fee",
                    "type": "stripe_fee",
                }
            ]
        txn = self._new(
            "txn_",
            "balance_transaction",
            amount=amount,
            available_on=_now(),
            balance_type="payments",
            currency=currency,
            description=f"{description} for {dispute['charge']}",
            exchange_rate=None if rate is None else float(rate),
            fee=fee,
            fee_details=details,
            net=amount - fee,
            reporting_category=category,
            source=dispute["id"],
            status="available",
            type="adjustment",
        )
        del txn["livemode"], txn["metadata"]
        dispute["balance_transactions"].append(txn)

    def _close_dispute_api(self, ctx: _Ctx, params: Obj, dispute_id: str) -> Obj:
        """`POST /v1/disputes/{id}/close`: the merchant accepts the dispute; it is lost."""
        dispute = self._get(self.disputes, "dispute", dispute_id)
        self._close_dispute(dispute, won=False)
        return dispute

    def _list_disputes(self, ctx: _Ctx, params: Obj) -> Obj:
        intent_id = _str(params, "payment_intent")
        charge_id = _str(params, "charge")
        created = params.get("created")  # a timestamp, or a range: `created[gte]=…` (gt, gte, lt, lte)
        bounds = created if isinstance(created, dict) else {} if created is None else {"eq": created}
        tests = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__, "eq": int.__eq__}
        for name in bounds:
            if name not in tests:
                raise _invalid(f"Received unknown parameter: created[{name}]", f"created[{name}]", "parameter_unknown")
        found = [
            dispute
            for dispute in reversed(self.disputes.values())
            if intent_id in {None, dispute["payment_intent"]}
            and charge_id in {None, dispute["charge"]}
            and all(tests[name](dispute["created"], int(value)) for name, value in bounds.items())
        ]
        return self._page(found, params, "/v1/disputes")

    def _retrieve_event(self, ctx: _Ctx, params: Obj, event_id: str) -> Obj:
        return self._get({event["id"]: event for event in self.events}, "event", event_id)

    def _list_events(self, ctx: _Ctx, params: Obj) -> Obj:
        event_type = _str(params, "type")
        events = [event for event in reversed(self.events) if event_type in {None, event["type"]}]
        return self._page(events, params, "/v1/events")


def main(argv: list[str] | None = None) -> int:
    """Serve the fake on a fixed port for development: `python tests/fakes/stripe_api.py --forward-to URL`.

    With `--forward-to`, every event is delivered there signed with `--webhook-secret`, as `stripe listen
    --forward-to` does with the real Stripe. Card payments are confirmed through the API (`confirm` with
    `pm_card_visa`) or `POST /_fake/payment_intents/{id}/pay`; Checkout Sessions are paid with
    `POST /_fake/checkout/{id}/pay`.
    """
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description="a local fake of the Stripe API")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--secret-key", default="sk_test_local")
    parser.add_argument("--forward-to", default=None, help="e.g. http://127.0.0.1:8000/webhooks/stripe")
    parser.add_argument("--webhook-secret", default="whsec_local")
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every API request (e.g. 50)")
    args = parser.parse_args(argv)
    with FakeStripe(secret_key=args.secret_key, port=args.port, latency_ms=args.latency_ms) as fake:
        print(f"fake Stripe API on {fake.url} (secret key {args.secret_key})", flush=True)  # noqa: T201

        def delivery(event: Obj) -> tuple[str, bytes, dict[str, str]]:
            return (event["type"], *fake.signed_delivery(event, args.webhook_secret))

        return fake.forward_events(args.forward_to, delivery)


if __name__ == "__main__":
    sys.exit(main())

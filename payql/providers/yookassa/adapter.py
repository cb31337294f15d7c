"""The YooKassa adapter: the only module that calls the `yookassa` SDK.

The SDK is synchronous, configured through class attributes, and sets no HTTP timeout. So: its configuration is
(re)asserted under a lock before each call builds its `ApiClient` (which copies it); every call runs on this
adapter's own thread pool and is abandoned at `PROVIDER_TIMEOUT_MS` (`PROVIDER_UNAVAILABLE`: the outcome is
unknown, and a retry sends the same `Idempotence-Key`, so YooKassa never sees two). Requests go through the SDK's
`ApiClient` with plain JSON bodies: the SDK's `Amount` model passes values through a binary float, and amounts here
are decimal strings formatted from integer minor units. Our own `Idempotence-Key` is on every POST (the SDK would
invent one otherwise). Payouts authenticate as the payout gateway (`YOOKASSA_PAYOUT_AGENT_ID` and
`YOOKASSA_PAYOUT_SECRET_KEY`), sent by a client that carries those credentials instead of the shop's; without them
payouts run in mock mode.

Notifications are not signed: the sender's address must be in `YOOKASSA_TRUSTED_IPS` (the socket peer, or the first
untrusted hop of `X-Forwarded-For` when the peer is one of `TRUSTED_PROXIES`), and the object is re-fetched before
anything changes (`WebhookService`), so a forged body changes nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any

import requests
from yookassa import Configuration
from yookassa.client import ApiClient
from yookassa.domain.exceptions import (
    ApiError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    ResponseProcessingError,
    TooManyRequestsError,
    UnauthorizedError,
)

from payql.models.enums import CaptureMethod, PaymentStatus, ProviderName, RefundReason, RefundStatus
from payql.money import MoneyError, format_minor, parse_amount
from payql.providers import messages
from payql.providers.base import (
    CreatePaymentRequest,
    ObjectKind,
    PayoutRefused,
    ProviderDispute,
    ProviderError,
    ProviderEvent,
    ProviderInvalidRequest,
    ProviderPayment,
    ProviderPayout,
    ProviderRefund,
    ProviderUnavailable,
    RateLimited,
    WebhookRejected,
)

logger = logging.getLogger("payql.providers.yookassa")
_CONFIG_LOCK = threading.Lock()
MOCK_PAYOUT_PREFIX = "po_mock_"  # payouts made in mock mode (no payout gateway credentials)

KINDS = {"payment": ObjectKind.PAYMENT, "refund": ObjectKind.REFUND, "payout": ObjectKind.PAYOUT}
# A notification's claim in the neutral vocabulary it is checked in: a refund's RefundStatus, a payout's
# ProviderPayout.status (a payment's is YooKassa's own status, compared with ProviderPayment.raw_status).
EXPECTED = {
    "refund": {"succeeded": RefundStatus.SUCCEEDED.value, "canceled": RefundStatus.CANCELED.value},
    "payout": {"succeeded": "succeeded", "canceled": "failed"},
}
HANDLED_EVENTS = frozenset(
    {
        "payment.waiting_for_capture",
        "payment.succeeded",
        "payment.canceled",
        "refund.succeeded",
        "payout.succeeded",
        "payout.canceled",
    }
)
# A payment canceled for one of these reasons never held money: the card was declined (FAILED, not CANCELED).
HOLD_ENDED = frozenset({"expired_on_capture", "canceled_by_merchant", "expired_on_confirmation"})
# A refund YooKassa cancels gives its amount back to the payment (`cancellation_details` says who and why); no
# notification is sent for it, so pending refunds are read again with their payment.
REFUND_STATUS = {
    "pending": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "canceled": RefundStatus.CANCELED,
}
REFUND_PAGE = 100  # YooKassa's largest `limit` for lists (10 by default); `next_cursor` leads to the next page


def _minor(amount: Any) -> tuple[int, str]:
    """A YooKassa amount {"value": "100.00", "currency": "RUB"} in minor units, parsed as a decimal string."""
    currency = str(amount["currency"])
    try:
        money = parse_amount(str(amount["value"]), currency, allow_zero=True)
    except MoneyError as exc:
        raise ProviderError(f"YooKassa sent an amount we cannot read: {exc.message}") from exc
    return money.minor, currency


def _amount(minor: int, currency: str) -> dict[str, str]:
    return {"value": format_minor(minor, currency), "currency": currency}


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value))


def map_refund(obj: dict[str, Any]) -> ProviderRefund:
    minor, currency = _minor(obj["amount"])
    status = REFUND_STATUS.get(str(obj.get("status")), RefundStatus.PENDING)
    details = obj.get("cancellation_details") or {}
    return ProviderRefund(
        provider_refund_id=str(obj["id"]),
        amount_minor=minor,
        currency=currency,
        status=status,
        reason=RefundReason.OTHER,
        # the cancellation's reason (`general_decline`, `insufficient_funds`, ...) is the refund's failure reason
        failure_message=str(details["reason"]) if status is RefundStatus.CANCELED and details.get("reason") else None,
        refund_id=(obj.get("metadata") or {}).get("refund_id"),
    )


def map_payment(obj: dict[str, Any], refunds: list[dict[str, Any]] | None = None) -> ProviderPayment:
    raw = str(obj.get("status"))
    minor, currency = _minor(obj["amount"])
    details = obj.get("cancellation_details") or {}
    status = {
        "pending": PaymentStatus.PENDING,
        "waiting_for_capture": PaymentStatus.AUTHORIZED,
        "succeeded": PaymentStatus.SUCCEEDED,
    }.get(raw, PaymentStatus.PENDING)
    failure_code = None
    if raw == "canceled":
        reason = str(details.get("reason", ""))
        status = PaymentStatus.CANCELED if reason in HOLD_ENDED or obj.get("paid") else PaymentStatus.FAILED
        failure_code = reason or None
    fee = 0
    if status is PaymentStatus.SUCCEEDED and obj.get("income_amount"):
        fee = minor - _minor(obj["income_amount"])[0]  # YooKassa's commission: it keeps it, refunds or not
    confirmation = obj.get("confirmation") or {}
    return ProviderPayment(
        provider_payment_id=str(obj["id"]),
        status=status,
        amount_minor=minor,
        currency=currency,
        captured_minor=minor if status is PaymentStatus.SUCCEEDED else 0,
        authorized_minor=minor if status is PaymentStatus.AUTHORIZED else 0,
        refunds=tuple(map_refund(item) for item in refunds or []),
        confirmation_url=confirmation.get("confirmation_url"),
        failure_code=failure_code,
        failure_message=messages.message(failure_code, messages.PAYMENT_CANCELED) if failure_code else None,
        expires_at=_time(obj.get("expires_at")),
        payment_id=(obj.get("metadata") or {}).get("payment_id"),
        raw_status=raw,
        provider_fee_minor=fee,
    )


def _error_code(exc: Exception) -> str | None:
    """YooKassa's error `code` ("invalid_request", "not_found", ...) from the SDK exception's body, if it has one."""
    content = getattr(exc, "content", None)
    code = content.get("code") if isinstance(content, dict) else None
    return str(code)[:64] if code else None


def _translate(exc: Exception) -> ProviderError:
    """The SDK's exceptions as ours, with payql's messages (`providers.messages`): YooKassa's `description` (which
    may quote our request) stays out; its error code is kept as `provider_code`."""
    code = _error_code(exc)
    if isinstance(exc, TooManyRequestsError):
        return RateLimited(messages.RATE_LIMITED, provider_code=code or "too_many_requests")
    if isinstance(exc, BadRequestError | NotFoundError):
        return ProviderInvalidRequest(messages.message(code, messages.REFUSED), provider_code=code or "invalid_request")
    if isinstance(exc, UnauthorizedError | ForbiddenError):
        return ProviderError(messages.CREDENTIALS, provider_code=code or "unauthorized")
    if isinstance(exc, ResponseProcessingError | ApiError):
        return ProviderUnavailable(messages.UNAVAILABLE, provider_code="api_error")
    # The SDK turns a dropped connection into AttributeError (no response to read) or a requests exception.
    return ProviderUnavailable(messages.UNAVAILABLE, provider_code="connection")


class _TimedApiClient(ApiClient):  # type: ignore[misc]
    """The SDK's client with a socket timeout. Its own `execute` passes none, so a hung YooKassa kept the calling
    thread (and, at process exit, the process) for as long as the connection stayed open; now the thread is free
    again about when the caller's deadline fires. (It also skips the SDK's request logging: bodies stay out of logs.)
    """

    socket_timeout_seconds: float = 10.0  # a duration, set from PROVIDER_TIMEOUT_MS

    def execute(self, body: Any, method: str, path: str, query_params: Any, request_headers: Any) -> requests.Response:
        session = self.get_session()
        try:
            response: requests.Response = session.request(
                method,
                self.endpoint + path,
                params=query_params,
                headers=request_headers,
                json=body,
                verify=self.configuration.verify,
                timeout=self.socket_timeout_seconds,
            )
        finally:
            session.close()
        return response


class YooKassaProvider:
    name = ProviderName.YOOKASSA
    mock = False
    cancels_unpaid = False  # only `waiting_for_capture` can be canceled; a pending payment lapses on its own

    def __init__(
        self,
        shop_id: str,
        secret_key: str,
        *,
        api_url: str,
        timeout_ms: int,
        trusted_ips: list[str],
        trusted_proxies: list[str],
        payout_agent_id: str | None = None,
        payout_secret_key: str | None = None,
    ) -> None:
        self._shop_id = shop_id
        self._secret_key = secret_key
        # Payouts authenticate as the payout gateway (its agent id and secret key), not as the shop; without them
        # payouts run in mock mode.
        self._payout_credentials = (
            (payout_agent_id, payout_secret_key) if payout_agent_id and payout_secret_key else None
        )
        self._api_url = api_url
        self._deadline = timeout_ms / 1000
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="yookassa")
        self._trusted = [ipaddress.ip_network(item, strict=False) for item in trusted_ips]
        self._proxies = [ipaddress.ip_network(item, strict=False) for item in trusted_proxies]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _client(self, *, payouts: bool = False) -> ApiClient:
        """A client with the shop's credentials, or (`payouts`) with the payout gateway's: the SDK's client copies
        the global configuration's credentials into its own attributes when built, and sends those."""
        client = self._shop_client()
        if payouts and self._payout_credentials is not None:
            client.shop_id, client.shop_password = self._payout_credentials
            client.auth_token = None
        return client

    def _shop_client(self) -> ApiClient:
        with _CONFIG_LOCK:  # the SDK's configuration is global: assert ours, then build a client that copies it
            if (Configuration.account_id, Configuration.secret_key, Configuration.api_url) != (
                self._shop_id,
                self._secret_key,
                self._api_url,
            ):
                Configuration.configure(self._shop_id, self._secret_key)
                Configuration.api_url = self._api_url  # configure() resets it
            client = _TimedApiClient()
            client.socket_timeout_seconds = self._deadline
            return client

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        key: str | None = None,
        query: Any = None,
        payouts: bool = False,
    ) -> dict[str, Any]:
        headers = {"Idempotence-Key": key} if key else {}

        def call() -> dict[str, Any]:
            client = self._client(payouts=payouts)
            if payouts and method == "POST":
                try:
                    created: dict[str, Any] = client.request(method, path, query, headers, body)
                except (BadRequestError, NotFoundError, UnauthorizedError, ForbiddenError) as exc:
                    raise _refused(exc) from exc
                return created
            result: dict[str, Any] = client.request(method, path, query, headers, body)
            return result

        future = self._pool.submit(call)
        try:
            return future.result(timeout=self._deadline)
        except FutureTimeout as exc:
            future.cancel()
            raise ProviderUnavailable(messages.UNAVAILABLE, provider_code="timeout") from exc
        except ProviderError:
            raise
        except (ApiError, AttributeError, requests.RequestException, ValueError) as exc:
            raise _translate(exc) from exc

    # -- payments ----------------------------------------------------------------------------------------

    def create_customer(self, user_id: str, idempotency_key: str) -> str | None:
        return None  # YooKassa has no customers

    def create_payment(self, request: CreatePaymentRequest, idempotency_key: str) -> ProviderPayment:
        body = {
            "amount": _amount(request.amount_minor, request.currency),
            "capture": request.capture_method is CaptureMethod.AUTOMATIC,
            "confirmation": {"type": "redirect", "return_url": request.return_url or ""},
            "description": request.description[:128],
            "metadata": {"payment_id": request.payment_id, "purpose": request.purpose.value},
        }
        return map_payment(self._request("POST", "/payments", body=body, key=idempotency_key))

    def retrieve_payment(self, provider_payment_id: str, *, refunds: bool = True) -> ProviderPayment:
        obj = self._request("GET", f"/payments/{provider_payment_id}")
        # Only a succeeded payment has refunds. They are all read, every page, whatever `refunded_amount` says: it
        # counts succeeded refunds only, and a pending refund may have been canceled since (YooKassa sends no
        # notification for that).
        listed = self._refunds_of(provider_payment_id) if refunds and obj.get("status") == "succeeded" else []
        return map_payment(obj, listed)

    def _refunds_of(self, provider_payment_id: str) -> list[dict[str, Any]]:
        """Every refund of the payment, page by page (`limit`, then `cursor` from each page's `next_cursor`)."""
        refunds: list[dict[str, Any]] = []
        query: dict[str, Any] = {"payment_id": provider_payment_id, "limit": REFUND_PAGE}
        seen: set[str] = set()
        while True:
            page = self._request("GET", "/refunds", query=query)
            refunds.extend(page.get("items") or [])
            cursor = page.get("next_cursor")
            if not cursor or cursor in seen:  # a cursor seen before would page for ever
                return refunds
            seen.add(str(cursor))
            query = {**query, "cursor": cursor}

    def confirm_payment(
        self, provider_payment_id: str, payment_method: str | None, idempotency_key: str
    ) -> ProviderPayment:
        return self.retrieve_payment(provider_payment_id)  # the customer confirms on YooKassa's page

    def capture(
        self, provider_payment_id: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> ProviderPayment:
        body = {"amount": _amount(amount_minor, currency)}
        return map_payment(
            self._request("POST", f"/payments/{provider_payment_id}/capture", body=body, key=idempotency_key)
        )

    def cancel(self, provider_payment_id: str, idempotency_key: str) -> ProviderPayment:
        return map_payment(
            self._request("POST", f"/payments/{provider_payment_id}/cancel", body={}, key=idempotency_key)
        )

    def refund(
        self,
        provider_payment_id: str,
        amount_minor: int,
        currency: str,
        reason: RefundReason,
        refund_id: str,
        idempotency_key: str,
    ) -> ProviderRefund:
        body = {
            "payment_id": provider_payment_id,
            "amount": _amount(amount_minor, currency),
            "description": f"refund {refund_id} ({reason.value.lower()})"[:250],
            "metadata": {"refund_id": refund_id},
        }
        return map_refund(self._request("POST", "/refunds", body=body, key=idempotency_key))

    def retrieve_refund(self, provider_refund_id: str) -> ProviderRefund:
        return map_refund(self._request("GET", f"/refunds/{provider_refund_id}"))

    # -- notifications -----------------------------------------------------------------------------------

    def sender(
        self, headers: dict[str, str], client_ip: str | None
    ) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The address that sent the request: the peer, or the first untrusted hop behind trusted proxies."""
        try:
            peer = ipaddress.ip_address(client_ip or "")
        except ValueError:
            return None
        if not any(peer in network for network in self._proxies):
            return peer
        hops = [hop.strip() for hop in headers.get("x-forwarded-for", "").split(",") if hop.strip()]
        for hop in reversed(hops):
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                return None
            if not any(address in network for network in self._proxies):
                return address
        return peer

    def parse_webhook(self, headers: dict[str, str], body: bytes, client_ip: str | None) -> ProviderEvent:
        sender = self.sender(headers, client_ip)
        if sender is None or not any(sender in network for network in self._trusted):
            raise WebhookRejected(f"sender {sender or client_ip!s} is not a trusted YooKassa address")
        try:
            notification = json.loads(body)
            event = str(notification["event"])
            obj = notification["object"]
            object_id = str(obj["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected("malformed notification body") from exc
        if notification.get("type") != "notification" or not isinstance(obj, dict):
            raise WebhookRejected("not a YooKassa notification")
        kind, _, claimed = event.partition(".")
        payment_ref = object_id if kind == "payment" else obj.get("payment_id")
        return ProviderEvent(
            dedupe_key=f"{object_id}:{event}",
            event_type=event,
            kind=KINDS.get(kind, ObjectKind.OTHER),
            object_id=object_id,
            handled=event in HANDLED_EVENTS,
            payment_id=(obj.get("metadata") or {}).get("payment_id") if kind == "payment" else None,
            payment_ref=str(payment_ref) if payment_ref else None,
            # what the re-fetched object must show for this unsigned delivery to count (not a forgery), in the
            # vocabulary of the DTO it is compared with
            expect=EXPECTED.get(kind, {}).get(claimed, claimed),
        )

    # -- payouts -----------------------------------------------------------------------------------------

    def payout(self, destination: str, amount_minor: int, currency: str, idempotency_key: str) -> ProviderPayout:
        """`destination` is a payout token (a card synonym from YooKassa's widget) or `wallet:<YooMoney number>`. A
        4xx answer other than 429 (an invalid destination, refused credentials) is `PayoutRefused`."""
        if self._payout_credentials is None:
            logger.info("MOCK MODE: YooKassa payout of %s %s (no payout gateway credentials)", amount_minor, currency)
            digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
            return ProviderPayout(f"{MOCK_PAYOUT_PREFIX}{digest}", amount_minor, currency, "succeeded")
        body: dict[str, Any] = {"amount": _amount(amount_minor, currency), "description": "payql payout"}
        if destination.startswith("wallet:"):
            body["payout_destination_data"] = {
                "type": "yoo_money",
                "account_number": destination.removeprefix("wallet:"),
            }
        else:
            body["payout_token"] = destination
        return _payout(self._request("POST", "/payouts", body=body, key=idempotency_key, payouts=True))

    def retrieve_payout(self, provider_payout_id: str) -> ProviderPayout:
        if provider_payout_id.startswith(MOCK_PAYOUT_PREFIX):
            raise ProviderInvalidRequest("a mock-mode payout is not kept at YooKassa")
        return _payout(self._request("GET", f"/payouts/{provider_payout_id}", payouts=True))

    def retrieve_dispute(self, provider_dispute_id: str) -> ProviderDispute:
        """YooKassa has no disputes API: a chargeback there reaches the shop outside the API, never as an object."""
        raise ProviderError(f"YooKassa has no disputes API ({provider_dispute_id})", provider_code="not_supported")

    def list_disputes(self, since: datetime, limit: int) -> list[ProviderDispute]:  # none to list
        return []


def _refused(exc: ApiError) -> PayoutRefused:
    """A payout YooKassa refused (400, 401, 403, 404), with its short error code (never its description)."""
    content = getattr(exc, "content", None) or {}
    code = content.get("code") if isinstance(content, dict) else None
    if not isinstance(code, str) or not code:
        code = "unauthorized" if isinstance(exc, UnauthorizedError | ForbiddenError) else "invalid_request"
    return PayoutRefused(f"YooKassa refused the payout ({code[:100]})", provider_code=code[:100])


def _payout(obj: dict[str, Any]) -> ProviderPayout:
    minor, currency = _minor(obj["amount"])
    status = {"succeeded": "succeeded", "canceled": "failed"}.get(str(obj.get("status")), "pending")
    details = obj.get("cancellation_details") or {}
    return ProviderPayout(
        provider_payout_id=str(obj["id"]),
        amount_minor=minor,
        currency=currency,
        status=status,
        failure_code=str(details["reason"])[:100] if details.get("reason") else None,
    )

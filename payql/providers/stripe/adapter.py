"""The Stripe adapter: the only module that calls the `stripe` SDK.

One `StripeClient` is built in `create_app` with its own HTTP transport (libcurl, `transport.py`) and timeout;
nothing is configured globally per call (only `stripe.enable_telemetry = False`). Operations run synchronously:
every GraphQL operation already runs in a worker thread, so a call never blocks the event loop. Our idempotency key
goes on every POST, suffixed per endpoint because Stripe refuses one key reused across endpoints. SDK exceptions
become `ProviderError`s here and nowhere else.

Enroll payments are PaymentIntents (`capture_method=manual` for MANUAL); credit packages are Checkout Sessions,
whose id is the payment's provider id (its PaymentIntent is looked up when a refund needs it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote_plus

import stripe

from payql.models.enums import CaptureMethod, PaymentPurpose, ProviderName, RefundReason
from payql.providers import messages
from payql.providers.base import (
    CreatePaymentRequest,
    ObjectKind,
    PaymentDeclined,
    PayoutRefused,
    ProviderDispute,
    ProviderError,
    ProviderEvent,
    ProviderInvalidRequest,
    ProviderInvalidState,
    ProviderPayment,
    ProviderPayout,
    ProviderRefund,
    ProviderUnavailable,
    RateLimited,
    WebhookRejected,
)
from payql.providers.stripe import mapping, units
from payql.providers.stripe.transport import CurlClient

logger = logging.getLogger("payql.providers.stripe")
T = TypeVar("T")

# How far a `Stripe-Signature` timestamp may be from our clock, either way. The SDK only bounds the past; a
# timestamp in the future would make a captured delivery replayable until then.
SIGNATURE_TOLERANCE_SECONDS = 300
REFUND_PAGE = 100  # refunds read per request (Stripe's largest page)
DISPUTE_PAGE = 100  # disputes read per request (Stripe's largest page)

# Event types we act on; anything else is recorded and acknowledged.
# Stripe's object types as the webhook service's kinds: a charge's events are about its payment.
KINDS = {
    "payment_intent": ObjectKind.PAYMENT,
    "charge": ObjectKind.PAYMENT,
    "refund": ObjectKind.REFUND,
    "checkout.session": ObjectKind.CHECKOUT_SESSION,
    "transfer": ObjectKind.PAYOUT,
    "dispute": ObjectKind.DISPUTE,
}
HANDLED_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.processing",
        "payment_intent.requires_action",
        "payment_intent.amount_capturable_updated",
        "charge.refunded",
        "charge.refund.updated",
        "refund.created",
        "refund.updated",
        "refund.failed",
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "transfer.reversed",
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    }
)
# Answers to a transfer create that refuse it for good (nothing was paid): 4xx other than a rate limit (429) or a
# concurrent request with the same key (409). An IdempotencyError (our key with other parameters) is not one.
_TRANSFER_REFUSALS = (stripe.InvalidRequestError, stripe.AuthenticationError, stripe.PermissionError, stripe.CardError)
_NOT_REFUSALS = frozenset({409, 429})


@contextmanager
def _translated() -> Iterator[None]:
    """Stripe's exceptions as ours: declines, rate limits, outages and the rest. Messages come from payql's catalogue
    (`providers.messages`); Stripe's own text (which may echo our request back) stays out, its code is kept."""
    try:
        yield
    except stripe.CardError as exc:
        code = mapping.decline_code(exc.error) or exc.code or "card_declined"
        if code in mapping.DECLINE_CODES:
            raise PaymentDeclined(messages.message(code, messages.DECLINED), provider_code=code) from exc
        raise ProviderError(messages.message(code, messages.DECLINED), provider_code=code) from exc
    except stripe.RateLimitError as exc:
        raise RateLimited(messages.RATE_LIMITED, provider_code="rate_limit") from exc
    except stripe.APIConnectionError as exc:
        raise ProviderUnavailable(messages.UNAVAILABLE, provider_code="connection") from exc
    except stripe.APIError as exc:
        if (exc.http_status or 500) >= 500:  # noqa: PLR2004
            raise ProviderUnavailable(messages.UNAVAILABLE, provider_code=exc.code or "api_error") from exc
        raise ProviderError(messages.message(exc.code, messages.FAILED), provider_code=exc.code) from exc
    except stripe.InvalidRequestError as exc:
        refusal = ProviderInvalidState if exc.code in mapping.STATE_CODES else ProviderInvalidRequest
        raise refusal(messages.message(exc.code, messages.REFUSED), provider_code=exc.code) from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise ProviderError(messages.CREDENTIALS, provider_code=exc.code or "unauthorized") from exc
    except stripe.StripeError as exc:
        raise ProviderError(messages.message(exc.code, messages.FAILED), provider_code=exc.code) from exc


def _options(key: str, endpoint: str) -> Any:
    return {"idempotency_key": f"{key}:{endpoint}"}


class StripeProvider:
    name = ProviderName.STRIPE
    mock = False
    cancels_unpaid = True

    def __init__(
        self,
        secret_key: str,
        *,
        api_base: str,
        webhook_secret: str | None,
        timeout_ms: int,
        max_network_retries: int = 0,
    ) -> None:
        stripe.enable_telemetry = False
        self._http = CurlClient(timeout_ms)  # the SDK's transport: see transport.py
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base},
            http_client=self._http,
            max_network_retries=max_network_retries,
        )
        self._webhook_secret = webhook_secret

    def close(self) -> None:
        self._http.close()

    def _call(self, fn: Callable[[], T]) -> T:
        with _translated():
            return fn()

    # -- customers ---------------------------------------------------------------------------------------

    def create_customer(self, user_id: str, idempotency_key: str) -> str | None:
        customer = self._call(
            lambda: self._client.v1.customers.create(
                params={"metadata": {"user_id": user_id}}, options=_options(idempotency_key, "customer")
            )
        )
        return str(customer["id"])

    # -- payments ----------------------------------------------------------------------------------------

    def create_payment(self, request: CreatePaymentRequest, idempotency_key: str) -> ProviderPayment:
        currency = request.currency.lower()
        amount = units.to_stripe(request.amount_minor, request.currency)  # refused here, before Stripe is called
        metadata = {"payment_id": request.payment_id, "purpose": request.purpose.value}
        if request.purpose is PaymentPurpose.PACKAGE:
            return_url = request.return_url or ""
            params: Any = {
                "mode": "payment",
                "client_reference_id": request.payment_id,
                "line_items": [
                    {
                        "price_data": {
                            "currency": currency,
                            "unit_amount": amount,
                            "product_data": {"name": request.description},
                        },
                        "quantity": 1,
                    }
                ],
                "success_url": _with_status(return_url, "success"),
                "cancel_url": _with_status(return_url, "cancel"),
                "metadata": metadata,
                "payment_intent_data": {"metadata": metadata},
            }
            if request.customer_id:
                params["customer"] = request.customer_id
            session = self._call(
                lambda: self._client.v1.checkout.sessions.create(
                    params=params, options=_options(idempotency_key, "checkout")
                )
            )
            return mapping.checkout_session(session, None)
        intent_params: Any = {
            "amount": amount,
            "currency": currency,
            "capture_method": "manual" if request.capture_method is CaptureMethod.MANUAL else "automatic",
            "allowed_payment_method_types": ["card"],
            "description": request.description,
            "metadata": metadata,
        }
        if request.customer_id:
            intent_params["customer"] = request.customer_id
        intent = self._call(
            lambda: self._client.v1.payment_intents.create(
                params=intent_params, options=_options(idempotency_key, "intent")
            )
        )
        return mapping.payment_intent(intent)

    def _read(self, path: str, **params: Any) -> Any:
        """A GET through the SDK's `raw_request` (its request, headers, retries and errors), the object left as its
        parsed JSON: building `StripeObject`s of every nested field was about a third of the webhook route's CPU
        in process (bench/README.md "Webhooks on PostgreSQL"); `mapping` reads dicts and StripeObjects alike."""
        return self._call(lambda: self._client.raw_request("get", path, **params).data)

    def _intent_refunds(self, intent_id: str) -> list[Any]:
        """Every refund of the intent, page by page (`has_more` / `starting_after`): a late failure or a pending
        refund that failed shows only on the refund object, whatever the charge's `amount_refunded` says."""
        refunds: list[Any] = []
        params: Any = {"payment_intent": intent_id, "limit": REFUND_PAGE}
        while True:
            listed = self._list_refunds(params)
            data = listed["data"]
            refunds.extend(data)
            if not listed["has_more"] or not data:
                return refunds
            params = {**params, "starting_after": str(data[-1]["id"])}

    def _list_refunds(self, params: Any) -> Any:
        return self._read("/v1/refunds", **params)

    def retrieve_payment(self, provider_payment_id: str, *, refunds: bool = True) -> ProviderPayment:
        if provider_payment_id.startswith("cs_"):
            session = self._read(f"/v1/checkout/sessions/{quote_plus(provider_payment_id)}")
            intent_id = session["payment_intent"]
            if intent_id is None:
                return mapping.checkout_session(session, None)
            intent = self._read(f"/v1/payment_intents/{quote_plus(str(intent_id))}")
            listed = self._intent_refunds(str(intent_id)) if refunds else []
            return mapping.checkout_session(session, intent, listed)
        intent = self._read(f"/v1/payment_intents/{quote_plus(provider_payment_id)}")
        # Refunds are read from Stripe's refund objects, all of them: a refund that failed, late or while pending,
        # leaves no trace on the charge's `amount_refunded`.
        listed = self._intent_refunds(provider_payment_id) if refunds and intent["status"] == "succeeded" else []
        return mapping.payment_intent(intent, listed)

    def confirm_payment(
        self, provider_payment_id: str, payment_method: str | None, idempotency_key: str
    ) -> ProviderPayment:
        if payment_method is None or provider_payment_id.startswith("cs_"):
            return self.retrieve_payment(provider_payment_id)
        intent = self._call(
            lambda: self._client.v1.payment_intents.confirm(
                provider_payment_id,
                params={"payment_method": payment_method},
                options=_options(idempotency_key, "confirm"),
            )
        )
        return mapping.payment_intent(intent)

    def capture(
        self, provider_payment_id: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> ProviderPayment:
        amount = units.to_stripe(amount_minor, currency)
        intent = self._call(
            lambda: self._client.v1.payment_intents.capture(
                provider_payment_id,
                params={"amount_to_capture": amount},
                options=_options(idempotency_key, "capture"),
            )
        )
        return mapping.payment_intent(intent)

    def cancel(self, provider_payment_id: str, idempotency_key: str) -> ProviderPayment:
        if provider_payment_id.startswith("cs_"):
            self._call(
                lambda: self._client.v1.checkout.sessions.expire(
                    provider_payment_id, options=_options(idempotency_key, "expire")
                )
            )
            return self.retrieve_payment(provider_payment_id)
        intent = self._call(
            lambda: self._client.v1.payment_intents.cancel(
                provider_payment_id, params={}, options=_options(idempotency_key, "cancel")
            )
        )
        return mapping.payment_intent(intent)

    def refund(
        self,
        provider_payment_id: str,
        amount_minor: int,
        currency: str,
        reason: RefundReason,
        refund_id: str,
        idempotency_key: str,
    ) -> ProviderRefund:
        amount = units.to_stripe(amount_minor, currency)  # refused here, before Stripe is called
        intent_id = provider_payment_id
        if provider_payment_id.startswith("cs_"):
            session = self._call(lambda: self._client.v1.checkout.sessions.retrieve(provider_payment_id))
            intent_id = str(session["payment_intent"])
        params: Any = {"payment_intent": intent_id, "amount": amount, "metadata": {"refund_id": refund_id}}
        if reason in mapping.REASON_TO_STRIPE:
            params["reason"] = mapping.REASON_TO_STRIPE[reason]
        created = self._call(
            lambda: self._client.v1.refunds.create(params=params, options=_options(idempotency_key, "refund"))
        )
        return mapping.refund(created)

    def retrieve_refund(self, provider_refund_id: str) -> ProviderRefund:
        return mapping.refund(self._call(lambda: self._client.v1.refunds.retrieve(provider_refund_id)))

    # -- disputes ----------------------------------------------------------------------------------------

    def retrieve_dispute(self, provider_dispute_id: str) -> ProviderDispute:
        """The dispute with its charge (whose metadata names our payment, a package's too)."""
        return mapping.dispute(
            self._call(lambda: self._client.v1.disputes.retrieve(provider_dispute_id, params={"expand": ["charge"]}))
        )

    def list_disputes(self, since: datetime, limit: int) -> list[ProviderDispute]:
        """Disputes created since `since`, newest first, page by page, each with its charge (whose metadata names our
        payment): one paged list for all, not a read per payment."""
        found: list[ProviderDispute] = []
        params: Any = {"created": {"gte": int(since.timestamp())}, "limit": DISPUTE_PAGE, "expand": ["data.charge"]}
        while len(found) < limit:
            listed = self._list_disputes(params)
            found.extend(mapping.dispute(dispute) for dispute in listed.data)
            if not listed.has_more or not listed.data:
                break
            params = {**params, "starting_after": str(listed.data[-1]["id"])}
        return found[:limit]

    def _list_disputes(self, params: Any) -> Any:
        return self._call(lambda: self._client.v1.disputes.list(params=params))

    # -- webhooks ----------------------------------------------------------------------------------------

    def parse_webhook(self, headers: dict[str, str], body: bytes, client_ip: str | None) -> ProviderEvent:
        if not self._webhook_secret:
            raise ProviderError("STRIPE_WEBHOOK_SECRET is not configured")
        signature = headers.get("stripe-signature")
        if not signature:
            raise WebhookRejected("missing Stripe-Signature header")
        # The SDK verifies the signature; the verified body is then read as plain JSON, as the SDK's split of
        # `construct_event` into `verify_header` and parsing allows: building `StripeObject`s of the whole event
        # only to turn its object back into a dict cost about 5% of the webhook route's CPU.
        try:
            text = body.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature, self._webhook_secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
            )
            event = json.loads(text)
        except stripe.SignatureVerificationError as exc:
            raise WebhookRejected("invalid Stripe signature or stale timestamp") from exc
        except ValueError as exc:
            raise WebhookRejected("malformed JSON body") from exc
        if _signed_at(signature) > time.time() + SIGNATURE_TOLERANCE_SECONDS:
            raise WebhookRejected("invalid Stripe signature or stale timestamp")
        obj: dict[str, Any] = event["data"]["object"]
        if not isinstance(obj, dict):
            raise TypeError("the event's data.object is not an object")
        kind = str(obj.get("object", "unknown"))
        payment_ref: str | None = None
        if kind in {"payment_intent", "checkout.session"}:
            payment_ref = str(obj["id"])
        elif kind in {"charge", "refund", "dispute"} and obj.get("payment_intent"):
            payment_ref = str(obj["payment_intent"])
        payment_id = mapping.metadata_payment_id(obj)
        if kind == "checkout.session":
            payment_id = obj.get("client_reference_id") or payment_id
        return ProviderEvent(
            dedupe_key=str(event["id"]),
            event_type=str(event["type"]),
            kind=KINDS.get(kind, ObjectKind.OTHER),
            object_id=obj.get("id", ""),
            handled=str(event["type"]) in HANDLED_EVENTS,
            payment_id=payment_id,
            payment_ref=payment_ref,
            touches_refunds=kind == "refund" or str(event["type"]).startswith("charge.refund"),
            created_at=created if isinstance(created := event.get("created"), int) else None,
        )

    # -- payouts -----------------------------------------------------------------------------------------

    def payout(self, destination: str, amount_minor: int, currency: str, idempotency_key: str) -> ProviderPayout:
        """A Connect transfer; a 4xx refusal (e.g. no such destination, a closed account) is `PayoutRefused` with
        Stripe's error code."""

        amount = units.to_stripe(amount_minor, currency, payout=True)

        def create() -> Any:
            try:
                # `raw_request`: the request, headers, retries and errors of `transfers.create`, with the transfer
                # left as its parsed JSON; building a `StripeObject` for each was a sixth of the CPU of the call
                # (the payout run makes one per payout: bench/README.md "Payout run")
                return self._client.raw_request(
                    "post",
                    "/v1/transfers",
                    amount=amount,
                    currency=currency.lower(),
                    destination=destination,
                    **_options(idempotency_key, "transfer"),
                ).data
            except stripe.StripeError as exc:
                status = exc.http_status or 0
                client_error = 400 <= status < 500 and status not in _NOT_REFUSALS  # noqa: PLR2004
                if client_error and isinstance(exc, (*_TRANSFER_REFUSALS, stripe.APIError)):
                    raise PayoutRefused(f"Stripe refused the transfer ({exc.code})", provider_code=exc.code) from exc
                raise

        return _transfer(self._call(create))

    def retrieve_payout(self, provider_payout_id: str) -> ProviderPayout:
        return _transfer(self._call(lambda: self._client.v1.transfers.retrieve(provider_payout_id)))


def _with_status(url: str, status: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}checkout={status}"


def _transfer(transfer: Any) -> ProviderPayout:
    """A Connect transfer is paid once created (the money is in the connected account), until the platform reverses
    it in full (`reversed`, with `transfer.reversed`): then no money reached the payee. A partial reversal leaves the
    payout paid."""
    return ProviderPayout(
        provider_payout_id=str(transfer["id"]),
        amount_minor=units.from_stripe(int(transfer["amount"]), str(transfer["currency"])),
        currency=str(transfer["currency"]).upper(),
        status="failed" if transfer["reversed"] else "succeeded",
        failure_code="transfer_reversed" if transfer["reversed"] else None,
        reversed_minor=units.from_stripe(int(transfer["amount_reversed"]), str(transfer["currency"])),
    )


def _signed_at(signature: str) -> int:
    """The `t=` of a header the SDK has just verified, read the way the SDK reads it (the first `t`)."""
    for item in signature.split(","):
        parts = item.split("=", 2)
        if parts[0] == "t" and len(parts) > 1:
            try:
                return int(parts[1])
            except ValueError:
                break
    raise WebhookRejected("invalid Stripe signature or stale timestamp")

"""The mock provider: the `PaymentProvider` protocol without keys, for development, demos and tests.

It keeps its objects in the `mock_provider_objects` table (its own short transactions, never inside ours), so
that they survive a restart and are shared by every worker, and it behaves as the real APIs do where it matters:
the same idempotency key replays the first answer, the same key with other parameters is refused, a refund never
exceeds what was captured. Stripe's test card numbers passed to `confirm_payment` decide the outcome:

| card (or `pm_card_…`)                | outcome                                              |
|--------------------------------------|------------------------------------------------------|
| none, 4242 4242 4242 4242, pm_card_visa | authorized (MANUAL capture) or succeeded           |
| …0002, pm_card_chargeDeclined          | declined `card_declined` (the payment stays retryable) |
| …9995, pm_card_chargeDeclinedInsufficientFunds | declined `insufficient_funds`               |
| …3155, pm_card_authenticationRequired  | requires action; a second confirm without a card completes it |

YooKassa's `confirmation_url` and Stripe Checkout's `checkout_url` (packages) are payql's own mock hosted page,
`/mock/checkout/{paymentId}` (`payql.mockpages`), where a person pays with the same test cards or cancels.

Every operation logs `MOCK MODE`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any

from payql.db import ROW_LOCK, Database
from payql.models import MockObject
from payql.models.enums import CaptureMethod, PaymentPurpose, PaymentStatus, ProviderName, RefundReason, RefundStatus
from payql.providers import messages
from payql.providers.base import (
    CreatePaymentRequest,
    PaymentDeclined,
    ProviderDispute,
    ProviderError,
    ProviderEvent,
    ProviderInvalidRequest,
    ProviderPayment,
    ProviderPayout,
    ProviderRefund,
    WebhookRejected,
)

logger = logging.getLogger("payql.providers.mock")

# Stripe's test cards; the message is payql's own, as the real adapters give it (`providers.messages`).
DECLINES = {
    tail: (code, messages.message(code, messages.DECLINED))
    for tail, code in (
        ("0002", "card_declined"),
        ("chargedeclined", "card_declined"),
        ("9995", "insufficient_funds"),
        ("chargedeclinedinsufficientfunds", "insufficient_funds"),
    )
}
REQUIRES_ACTION_CARDS = ("3155", "authenticationrequired")


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).hexdigest()


def _card_tail(payment_method: str) -> str:
    method = payment_method.replace(" ", "").replace("-", "").lower()
    if method.startswith("pm_card_"):
        return method.removeprefix("pm_card_")
    return method[-4:]


class MockProvider:
    """Either STRIPE-shaped (`pi_mock_…_secret_…`, `cs_mock_…` checkout) or YOOKASSA-shaped (redirect URLs)."""

    mock = True
    cancels_unpaid = True

    def __init__(self, name: ProviderName, db: Database, *, checkout_base: str = "http://127.0.0.1:8000") -> None:
        self.name = name
        self._db = db
        self._checkout_base = checkout_base.rstrip("/")

    def checkout_url(self, payment_id: str) -> str:
        """payql's own mock hosted page for `payment_id` (`payql.mockpages`), on `Settings.base_url`."""
        return f"{self._checkout_base}/mock/checkout/{payment_id}"

    # -- storage -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Nothing to release: the mock keeps its state in the database."""

    def _load(self, object_id: str) -> dict[str, Any]:
        with self._db.read() as session:
            row = session.get(MockObject, object_id)
            if row is None or row.provider != self.name:
                raise ProviderInvalidRequest(f"No such object: {object_id}", provider_code="resource_missing")
            data: dict[str, Any] = json.loads(row.data)
            return data

    def _keyed(self, key: str, params: str, create: Any) -> dict[str, Any]:
        """Run `create()` once per idempotency key and remember what it made; replays return the same object."""
        key_id = f"key:{self.name}:{key}"
        with self._db.uow() as uow:
            existing = uow.session.get(MockObject, key_id)
            if existing is not None:
                remembered = json.loads(existing.data)
                if remembered["params"] != params:
                    raise ProviderInvalidRequest(
                        "Keys for idempotent requests can only be used with the same parameters they were first "
                        "used with.",
                        provider_code="idempotency_error",
                    )
                obj = uow.session.get(MockObject, remembered["object_id"])
                if obj is None:  # pragma: no cover - the two rows are written together
                    raise ProviderInvalidRequest("idempotent object vanished")
                data: dict[str, Any] = json.loads(obj.data)
                return data
            made: dict[str, Any] = create(uow.session)
            uow.session.add(
                MockObject(
                    id=key_id,
                    provider=self.name.value,
                    kind="key",
                    data=json.dumps({"params": params, "object_id": made["id"]}),
                )
            )
            uow.commit()
            return made

    def _update(self, object_id: str, change: Any) -> dict[str, Any]:
        with self._db.uow() as uow:
            row = uow.session.get(MockObject, object_id, with_for_update=ROW_LOCK)
            if row is None or row.provider != self.name:
                raise ProviderInvalidRequest(f"No such object: {object_id}", provider_code="resource_missing")
            data: dict[str, Any] = json.loads(row.data)
            change(data)
            row.data = json.dumps(data)
            uow.commit()
            return data

    # -- mapping -------------------------------------------------------------------------------------------

    def _payment(self, data: dict[str, Any]) -> ProviderPayment:
        refunds = tuple(
            ProviderRefund(
                provider_refund_id=refund["id"],
                amount_minor=refund["amount"],
                currency=data["currency"],
                status=RefundStatus(refund["status"]),
                reason=RefundReason(refund["reason"]),
                refund_id=refund.get("refund_id"),
            )
            for refund in data["refunds"]
        )
        return ProviderPayment(
            provider_payment_id=data["id"],
            status=PaymentStatus(data["status"]),
            amount_minor=data["amount"],
            currency=data["currency"],
            captured_minor=data["captured"],
            authorized_minor=data["authorized"],
            refunds=refunds,
            client_secret=data.get("client_secret"),
            confirmation_url=data.get("confirmation_url"),
            checkout_url=data.get("checkout_url"),
            failure_code=data.get("failure_code"),
            failure_message=data.get("failure_message"),
            payment_id=data["payment_id"],
            raw_status=data["status"],
        )

    # -- the protocol --------------------------------------------------------------------------------------

    def create_customer(self, user_id: str, idempotency_key: str) -> str | None:
        if self.name is not ProviderName.STRIPE:
            return None
        return f"cus_mock_{_digest(self.name, user_id)[:24]}"

    def create_payment(self, request: CreatePaymentRequest, idempotency_key: str) -> ProviderPayment:
        params = _digest(request.amount_minor, request.currency, request.capture_method, request.payment_id)

        def create(session: Any) -> dict[str, Any]:
            token = _digest(self.name, idempotency_key)[:24]
            data: dict[str, Any] = {
                "status": PaymentStatus.PENDING.value,
                "amount": request.amount_minor,
                "currency": request.currency,
                "capture_method": request.capture_method.value,
                "captured": 0,
                "authorized": 0,
                "refunds": [],
                "payment_id": request.payment_id,
            }
            if self.name is ProviderName.YOOKASSA:
                data["id"] = f"yk_mock_{token}"
                data["confirmation_url"] = self.checkout_url(request.payment_id)
            elif request.purpose is PaymentPurpose.PACKAGE:
                data["id"] = f"cs_mock_{token}"
                data["checkout_url"] = self.checkout_url(request.payment_id)
            else:
                data["id"] = f"pi_mock_{token}"
                data["client_secret"] = f"{data['id']}_secret_{_digest('secret', token)[:16]}"
            session.add(MockObject(id=data["id"], provider=self.name.value, kind="payment", data=json.dumps(data)))
            return data

        data = self._keyed(idempotency_key, params, create)
        logger.info("MOCK MODE: %s payment %s created for %s", self.name, data["id"], request.payment_id)
        return self._payment(data)

    def retrieve_payment(self, provider_payment_id: str, *, refunds: bool = True) -> ProviderPayment:
        del refunds  # the mock's refunds live in the payment's own record: reading them costs nothing
        return self._payment(self._load(provider_payment_id))

    def confirm_payment(
        self, provider_payment_id: str, payment_method: str | None, idempotency_key: str
    ) -> ProviderPayment:
        del idempotency_key  # confirming twice with the same outcome is harmless here
        outcome: dict[str, str] = {}

        def change(data: dict[str, Any]) -> None:
            status = PaymentStatus(data["status"])
            if status not in {PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION}:
                return
            tail = _card_tail(payment_method) if payment_method else None
            if tail is None and status is PaymentStatus.REQUIRES_ACTION:
                tail = "authenticated"
            if tail in DECLINES:
                code, message = DECLINES[tail]
                data.update(status=PaymentStatus.PENDING.value, failure_code=code, failure_message=message)
                outcome.update(code=code, message=message)
                return
            if tail in REQUIRES_ACTION_CARDS:
                data.update(status=PaymentStatus.REQUIRES_ACTION.value, failure_code=None, failure_message=None)
                return
            data.update(failure_code=None, failure_message=None, authorized=data["amount"])
            if data["capture_method"] == CaptureMethod.MANUAL.value:
                data["status"] = PaymentStatus.AUTHORIZED.value
            else:
                data.update(status=PaymentStatus.SUCCEEDED.value, captured=data["amount"])

        data = self._update(provider_payment_id, change)
        logger.info("MOCK MODE: %s payment %s confirmed: %s", self.name, provider_payment_id, data["status"])
        if outcome:
            raise PaymentDeclined(outcome["message"], provider_code=outcome["code"])
        return self._payment(data)

    def capture(
        self, provider_payment_id: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> ProviderPayment:
        def change(data: dict[str, Any]) -> None:
            if data["status"] == PaymentStatus.SUCCEEDED.value:
                return  # captured already: a replay of the same capture
            if data["status"] != PaymentStatus.AUTHORIZED.value:
                raise ProviderInvalidRequest(f"payment is {data['status']}, not authorized")
            if currency != data["currency"] or not 0 < amount_minor <= data["authorized"]:
                raise ProviderInvalidRequest("capture amount exceeds the authorized amount")
            data.update(status=PaymentStatus.SUCCEEDED.value, captured=amount_minor)

        del idempotency_key
        data = self._update(provider_payment_id, change)
        logger.info("MOCK MODE: %s payment %s captured", self.name, provider_payment_id)
        return self._payment(data)

    def cancel(self, provider_payment_id: str, idempotency_key: str) -> ProviderPayment:
        def change(data: dict[str, Any]) -> None:
            if data["status"] == PaymentStatus.CANCELED.value:
                return
            if data["status"] == PaymentStatus.SUCCEEDED.value:
                raise ProviderInvalidRequest("a captured payment cannot be canceled; refund it")
            data["status"] = PaymentStatus.CANCELED.value

        del idempotency_key
        data = self._update(provider_payment_id, change)
        logger.info("MOCK MODE: %s payment %s canceled", self.name, provider_payment_id)
        return self._payment(data)

    def refund(
        self,
        provider_payment_id: str,
        amount_minor: int,
        currency: str,
        reason: RefundReason,
        refund_id: str,
        idempotency_key: str,
    ) -> ProviderRefund:
        params = _digest(provider_payment_id, amount_minor, currency, refund_id)
        key_id = f"key:{self.name}:{idempotency_key}"
        with self._db.uow() as uow:
            session = uow.session
            remembered = session.get(MockObject, key_id)
            if remembered is not None:
                if json.loads(remembered.data)["params"] != params:
                    raise ProviderInvalidRequest("idempotency key reused with other parameters")
                return self.retrieve_refund(json.loads(remembered.data)["object_id"])
            row = session.get(MockObject, provider_payment_id, with_for_update=ROW_LOCK)
            if row is None or row.provider != self.name:
                raise ProviderInvalidRequest(f"No such payment: {provider_payment_id}")
            data = json.loads(row.data)
            if data["status"] != PaymentStatus.SUCCEEDED.value:
                raise ProviderInvalidRequest(f"payment is {data['status']}, nothing captured to refund")
            refunded = sum(r["amount"] for r in data["refunds"] if r["status"] != RefundStatus.FAILED.value)
            if currency != data["currency"] or not 0 < amount_minor <= data["captured"] - refunded:
                raise ProviderInvalidRequest("refund amount exceeds what is left of the payment")
            made = {
                "id": f"re_mock_{_digest(self.name, idempotency_key)[:24]}",
                "amount": amount_minor,
                "status": RefundStatus.SUCCEEDED.value,
                "reason": reason.value,
                "refund_id": refund_id,
                "payment": provider_payment_id,
            }
            data["refunds"].append(made)
            row.data = json.dumps(data)
            session.add(MockObject(id=made["id"], provider=self.name.value, kind="refund", data=json.dumps(made)))
            session.add(
                MockObject(
                    id=key_id,
                    provider=self.name.value,
                    kind="key",
                    data=json.dumps({"params": params, "object_id": made["id"]}),
                )
            )
            uow.commit()
        logger.info("MOCK MODE: %s refund %s of %s", self.name, made["id"], provider_payment_id)
        return self._refund(made, currency)

    def _refund(self, data: dict[str, Any], currency: str) -> ProviderRefund:
        return ProviderRefund(
            provider_refund_id=data["id"],
            amount_minor=data["amount"],
            currency=currency,
            status=RefundStatus(data["status"]),
            reason=RefundReason(data["reason"]),
            refund_id=data.get("refund_id"),
        )

    def retrieve_refund(self, provider_refund_id: str) -> ProviderRefund:
        refund = self._load(provider_refund_id)
        payment = self._load(refund["payment"])
        return self._refund(refund, payment["currency"])

    def parse_webhook(self, headers: dict[str, str], body: bytes, client_ip: str | None) -> ProviderEvent:
        raise WebhookRejected(f"{self.name} runs in mock mode: webhooks are not accepted")

    def retrieve_payout(self, provider_payout_id: str) -> ProviderPayout:
        raise ProviderInvalidRequest(f"MOCK MODE keeps no payouts: {provider_payout_id}")

    def payout(self, destination: str, amount_minor: int, currency: str, idempotency_key: str) -> ProviderPayout:
        logger.info("MOCK MODE: %s payout of %s %s to %s", self.name, amount_minor, currency, destination)
        return ProviderPayout(
            provider_payout_id=f"po_mock_{_digest(self.name, idempotency_key)[:24]}",
            amount_minor=amount_minor,
            currency=currency,
            status="succeeded",
        )

    def retrieve_dispute(self, provider_dispute_id: str) -> ProviderDispute:
        """The mock opens no disputes: there is none to read."""
        raise ProviderError(f"MOCK MODE has no dispute {provider_dispute_id}", provider_code="resource_missing")

    def list_disputes(self, since: datetime, limit: int) -> list[ProviderDispute]:  # none to list
        return []

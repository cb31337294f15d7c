"""Payments: start one (`create_intent`), confirm it, and apply what a provider reports (`apply`).

Every provider call follows intent, call, apply (DESIGN.md §6): a pending row with its idempotency key is
committed first, the provider is called outside any database transaction with that key, and the answer is
applied in a second transaction through `PaymentService.apply`, the only code that moves a payment's status.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payql.auth import Principal
from payql.db import ROW_LOCK, Database
from payql.faults import crash_point
from payql.models import Enroll, Payment, ProviderCustomer
from payql.models.enums import (
    CaptureMethod,
    EnrollStatus,
    PaymentPurpose,
    PaymentStatus,
    ProviderName,
)
from payql.models.payment import OPEN_STATUSES
from payql.providers.base import (
    CreatePaymentRequest,
    PaymentDeclined,
    PaymentProvider,
    ProviderError,
    ProviderPayment,
)
from payql.services import text
from payql.services.catalogue import Catalogue
from payql.services.errors import DomainError, Forbidden, InvalidInput, InvalidState, NotFound
from payql.services.idempotency import IdempotencyService, derived_id
from payql.services.lifecycle import NOT_YET, Lifecycle, record_failure
from payql.settings import Settings

logger = logging.getLogger("payql.payments")

ENROLL_CLOSED = frozenset({EnrollStatus.COMPLETED, EnrollStatus.CANCELLED, EnrollStatus.EXPIRED})


@dataclass(frozen=True, slots=True)
class IntentResult:
    payment: Payment
    client_secret: str | None
    checkout_url: str | None
    confirmation_url: str | None


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    payment: Payment
    error: DomainError | ProviderError | None = None  # a decline keeps its provider code (`providerCode`)


def open_payment(session: Session, enroll_id: str, *, lock: bool = False) -> Payment | None:
    """The enroll's payment that is not closed (at most one: a unique partial index)."""
    query = select(Payment).where(Payment.enroll_id == enroll_id, Payment.status.in_(OPEN_STATUSES))
    return session.scalars(query.with_for_update(key_share=True) if lock else query).first()


def _resumable(payment: Payment, provider: PaymentProvider, capture_method: CaptureMethod | None) -> bool:
    """An open payment that never reached its provider, asked for again the same way."""
    return (
        payment.provider_payment_id is None
        and payment.status is PaymentStatus.PENDING
        and payment.provider is provider.name
        and payment.capture_method is (capture_method or CaptureMethod.MANUAL)
    )


def can_see(principal: Principal, payment: Payment) -> bool:
    return principal.is_admin or principal.user_id in {payment.payer_id, payment.payee_id}


class PaymentService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        providers: dict[ProviderName, PaymentProvider],
        catalogue: Catalogue,
        idempotency: IdempotencyService,
        lifecycle: Lifecycle,
    ) -> None:
        self._db = db
        self._settings = settings
        self._providers = providers
        self._catalogue = catalogue
        self._idempotency = idempotency
        self.lifecycle = lifecycle

    def provider(self, name: ProviderName) -> PaymentProvider:
        return self._providers[name]

    # -- reading -------------------------------------------------------------------------------------------

    def get_visible(self, session: Session, principal: Principal, payment_id: str, *, lock: bool = False) -> Payment:
        """The payment if `principal` may see it; otherwise NOT_FOUND, exactly as if it did not exist."""
        payment = session.get(Payment, payment_id, with_for_update=ROW_LOCK if lock else False)
        if payment is None or not can_see(principal, payment):
            raise NotFound("payment not found", field="paymentId")
        return payment

    # -- createIntent --------------------------------------------------------------------------------------

    def create_intent(
        self,
        principal: Principal,
        *,
        enroll_id: str | None,
        package_code: str | None,
        provider: ProviderName,
        capture_method: CaptureMethod | None,
        return_url: str | None,
        idempotency_key: str | None,
    ) -> IntentResult:
        if (enroll_id is None) == (package_code is None):
            raise InvalidInput("give exactly one of enrollId and packageCode", field="enrollId")
        text.bounded(return_url, "returnUrl", text.RETURN_URL)
        if return_url is not None and not return_url.startswith(("https://", "http://")):
            raise InvalidInput("returnUrl must be an http(s) URL", field="returnUrl")
        request = {
            "enrollId": enroll_id,
            "packageCode": package_code,
            "provider": provider.value,
            "captureMethod": capture_method.value if capture_method else None,
            "returnUrl": return_url,
        }
        return self._idempotency.run(
            user_id=principal.user_id,
            operation="createIntent",
            key=idempotency_key,
            request=request,
            execute=lambda seed: self._create_intent(
                principal, seed, enroll_id, package_code, provider, capture_method, return_url
            ),
            encode=lambda result: {"payment_id": result.payment.id},
            decode=self._replay_intent,
        )

    def _replay_intent(self, stored: dict[str, Any]) -> IntentResult:
        with self._db.read() as session:
            payment = session.get(Payment, stored["payment_id"])
            if payment is None:  # pragma: no cover - payments are never deleted
                raise NotFound("payment not found")
            return self._intent_result(payment)

    @staticmethod
    def _intent_result(payment: Payment) -> IntentResult:
        return IntentResult(
            payment=payment,
            client_secret=payment.client_secret,
            checkout_url=payment.checkout_url,
            confirmation_url=payment.confirmation_url,
        )

    def _create_intent(
        self,
        principal: Principal,
        seed: str,
        enroll_id: str | None,
        package_code: str | None,
        provider_name: ProviderName,
        capture_method: CaptureMethod | None,
        return_url: str | None,
    ) -> IntentResult:
        provider = self._providers[provider_name]
        payment_id = derived_id("pay", seed)
        with self._db.uow() as uow:
            session = uow.session
            payment = session.get(Payment, payment_id)
            if payment is None:
                payment = self._new_payment(
                    session, principal, payment_id, enroll_id, package_code, provider, capture_method, return_url
                )
                try:
                    uow.commit()
                except IntegrityError as exc:
                    raise InvalidState("the enroll already has a payment in progress", field="enrollId") from exc
        if payment.provider_payment_id is None:
            payment = self._send(payment, provider)
        return self._intent_result(payment)

    def _new_payment(
        self,
        session: Session,
        principal: Principal,
        payment_id: str,
        enroll_id: str | None,
        package_code: str | None,
        provider: PaymentProvider,
        capture_method: CaptureMethod | None,
        return_url: str | None,
    ) -> Payment:
        fees = self._settings.enroll_fees.get(provider.name.value)
        payment = Payment(
            id=payment_id,
            provider=provider.name,
            mock=provider.mock,
            payer_id=principal.user_id,
            provider_key=f"payql-{payment_id}-create",
            return_url=return_url,
            status=PaymentStatus.PENDING,
        )
        if enroll_id is not None:
            enroll = session.get(Enroll, enroll_id, with_for_update=ROW_LOCK)
            if enroll is None or enroll.client_id != principal.user_id:
                raise NotFound("enroll not found", field="enrollId")
            if enroll.status in ENROLL_CLOSED:
                raise InvalidState(f"the enroll is {enroll.status.value}: it cannot be paid", field="enrollId")
            existing = open_payment(session, enroll.id)
            if existing is not None and _resumable(existing, provider, capture_method):
                return existing  # never reached the provider (an outage): this attempt resumes it, same key
            if existing is not None:
                raise InvalidState(
                    f"the enroll already has a payment ({existing.id}, {existing.status.value})", field="enrollId"
                )
            payment.purpose = PaymentPurpose.ENROLL
            payment.enroll_id = enroll.id
            payment.payee_id = enroll.provider_id
            payment.amount_minor = enroll.price_minor
            payment.currency = enroll.currency
            payment.capture_method = capture_method or CaptureMethod.MANUAL
            payment.platform_bps = fees.platform_bps if fees else 0
            payment.tax_bps = fees.tax_bps if fees else 0
        else:
            package = self._catalogue.get(package_code or "")
            if package is None:
                raise NotFound(f"unknown package {package_code!r}", field="packageCode")
            payment.purpose = PaymentPurpose.PACKAGE
            payment.package_code = package.code
            payment.credits = package.credits
            payment.amount_minor = package.price.minor
            payment.currency = package.price.currency
            payment.capture_method = capture_method or CaptureMethod.AUTOMATIC
            if payment.capture_method is CaptureMethod.MANUAL:
                raise InvalidInput("credit packages are captured automatically", field="captureMethod")
        session.add(payment)
        return payment

    def _customer(self, payer_id: str, provider: PaymentProvider) -> str | None:
        """The payer's customer at the provider: created on their first payment there, then reused."""
        key = (payer_id, provider.name.value, provider.mock)
        with self._db.read() as session:
            known = session.get(ProviderCustomer, key)
            if known is not None:
                return known.customer_id
        customer_id = provider.create_customer(payer_id, f"payql-customer-{payer_id}")
        if customer_id is None:
            return None
        with self._db.uow() as uow:
            if uow.session.get(ProviderCustomer, key) is None:
                uow.session.add(
                    ProviderCustomer(user_id=payer_id, provider=key[1], mock=provider.mock, customer_id=customer_id)
                )
                # a concurrent first payment may record it first: the same customer (same idempotency key)
                with contextlib.suppress(IntegrityError):
                    uow.commit()
        return customer_id

    def _send(self, payment: Payment, provider: PaymentProvider) -> Payment:
        """Create the payment at the provider (outside any transaction) and apply the answer."""
        customer_id = self._customer(payment.payer_id, provider)
        request = CreatePaymentRequest(
            payment_id=payment.id,
            purpose=payment.purpose,
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            capture_method=payment.capture_method,
            description=f"payql {payment.purpose.value.lower()} {payment.enroll_id or payment.package_code}",
            payer_id=payment.payer_id,
            return_url=payment.return_url or self._settings.default_return_url,
            package_code=payment.package_code,
            customer_id=customer_id,
        )
        try:
            answer = provider.create_payment(request, payment.provider_key)
        except ProviderError as exc:
            if not exc.transient:
                self._fail(payment.id, exc.provider_code, exc.message)
            raise  # transient: the payment stays PENDING; a retry sends the same provider key
        crash_point("create_payment")
        return self.apply_answer(payment.id, answer)

    def _fail(self, payment_id: str, code: str | None, message: str) -> None:
        """A definitive refusal to create the payment: it is FAILED and frees the enroll for another attempt."""
        with self._db.uow() as uow:
            payment = uow.session.get(Payment, payment_id, with_for_update=ROW_LOCK)
            if payment is not None:
                self.lifecycle.fail_creation(payment, code, message)
                uow.commit()

    # -- reconcile: finishing what a crash or an outage left -----------------------------------------------

    def resume_creation(self, payment_id: str) -> Payment:
        """Send a payment whose creation never came back to its provider again, with the same key: the provider
        replays the payment it made (or makes it now), and the answer is applied (`payql reconcile`)."""
        with self._db.read() as session:
            payment = session.get(Payment, payment_id)
            if payment is None:  # pragma: no cover - payments are never deleted
                raise NotFound("payment not found")
        if payment.provider_payment_id is not None or payment.status is not PaymentStatus.PENDING:
            return payment
        return self._send(payment, self._providers[payment.provider])

    def refresh(self, payment_id: str) -> bool:
        """Re-fetch a payment (and its refunds) from its provider and apply it; whether anything changed."""
        return self.reread(payment_id)[0]

    def reread(self, payment_id: str) -> tuple[bool, ProviderPayment | None]:
        """`refresh`, with the provider's answer that was applied (None: the payment never reached its provider)."""
        with self._db.read() as session:
            payment = session.get(Payment, payment_id)
            if payment is None or payment.provider_payment_id is None:
                return False, None
        answer = self._providers[payment.provider].retrieve_payment(payment.provider_payment_id)
        with self._db.uow() as uow:
            locked = uow.session.get(Payment, payment_id, with_for_update=ROW_LOCK)
            if locked is None:  # pragma: no cover - payments are never deleted
                return False, answer
            changed = self.lifecycle.apply(uow.session, locked, answer)
            uow.commit()
            return changed, answer

    # -- confirm -------------------------------------------------------------------------------------------

    def confirm(self, principal: Principal, payment_id: str, payment_method: str | None) -> ConfirmResult:
        text.bounded(payment_method, "paymentMethod", text.PAYMENT_METHOD)
        with self._db.read() as session:
            payment = self.get_visible(session, principal, payment_id)
        if payment_method is not None and principal.user_id != payment.payer_id:
            raise Forbidden("only the payer can pay with a payment method", field="paymentMethod")
        return self._confirm(payment, payment_method)

    def _confirm(self, payment: Payment, payment_method: str | None) -> ConfirmResult:
        provider = self._providers[payment.provider]
        if payment.provider_payment_id is None:
            if payment.status not in NOT_YET:
                raise InvalidState(f"the payment is {payment.status.value}")
            payment = self._send(payment, provider)
        provider_id = payment.provider_payment_id
        if provider_id is None:  # pragma: no cover - _send always records the provider's id
            raise InvalidState("the payment was not created at the provider")
        try:
            answer = provider.confirm_payment(
                provider_id, payment_method, f"payql-{payment.id}-confirm-{secrets.token_hex(8)}"
            )
        except PaymentDeclined as exc:
            answer = provider.retrieve_payment(provider_id)
            payment = self.apply_answer(payment.id, answer, failure=(exc.provider_code, exc.message))
            return ConfirmResult(payment=payment, error=exc)
        except ProviderError as exc:
            if exc.transient:
                raise
            # Refused as "unexpected state": most often the retry of a confirmation whose answer was lost (each
            # attempt has its own key, so that another card can be tried). If the provider shows the payment past
            # confirmation, that is the outcome to apply; otherwise the refusal stands.
            answer = provider.retrieve_payment(provider_id)
            if answer.status in NOT_YET:
                raise
        return ConfirmResult(payment=self.apply_answer(payment.id, answer))

    # -- the mock hosted page (payql.mockpages): a person at the mock's checkout, not a caller of the API ----------

    def mock_payment(self, payment_id: str) -> Payment:
        """A payment made in mock mode, for its hosted page; any other id is NOT_FOUND."""
        with self._db.read() as session:
            payment = session.get(Payment, payment_id)
        if payment is None or not payment.mock or not self._providers[payment.provider].mock:
            raise NotFound("payment not found")
        return payment

    def pay_on_mock_page(self, payment_id: str, card: str) -> ConfirmResult:
        """Pay a mock payment still waiting with a test card, through the same confirmation as `confirm`; a payment
        no longer waiting (paid, cancelled, or a second submit of the same form) is returned as it is."""
        text.bounded(card, "card", text.PAYMENT_METHOD)
        payment = self.mock_payment(payment_id)
        if payment.status not in NOT_YET:
            return ConfirmResult(payment=payment)
        return self._confirm(payment, card)

    def cancel_on_mock_page(self, payment_id: str) -> Payment:
        """The person cancelled at the mock's checkout: the mock payment is cancelled and that answer applied, as a
        provider's cancellation would be. A payment no longer waiting is returned as it is."""
        payment = self.mock_payment(payment_id)
        if payment.status not in NOT_YET:
            return payment
        if payment.provider_payment_id is None:
            payment = self._send(payment, self._providers[payment.provider])
        provider = self._providers[payment.provider]
        provider_id = payment.provider_payment_id
        if provider_id is None:  # pragma: no cover - _send always records the provider's id
            raise InvalidState("the payment was not created at the provider")
        try:
            answer = provider.cancel(provider_id, f"payql-{payment.id}-mock-cancel")
        except ProviderError:
            answer = provider.retrieve_payment(provider_id)  # paid meanwhile (another tab): that is the outcome
        return self.apply_answer(payment.id, answer)

    # -- apply: a provider's answer, through the one lifecycle ----------------------------------------------

    def apply_answer(
        self, payment_id: str, answer: ProviderPayment, *, failure: tuple[str | None, str] | None = None
    ) -> Payment:
        with self._db.uow() as uow:
            payment = uow.session.get(Payment, payment_id, with_for_update=ROW_LOCK)
            if payment is None:  # pragma: no cover - callers pass ids they just read
                raise NotFound("payment not found")
            self.lifecycle.apply(uow.session, payment, answer)
            if failure is not None:
                record_failure(payment, *failure)
            uow.commit()
            return payment

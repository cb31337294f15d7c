"""Use cases. `Services` is the bundle of them that `payql.bootstrap.bootstrap` builds once per process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from payql.auth import TokenVerifier
from payql.db import Database
from payql.models.enums import ProviderName
from payql.providers.base import PaymentProvider
from payql.services.catalogue import Catalogue
from payql.services.credits import CreditService
from payql.services.disputes import DisputeService
from payql.services.enrolls import EnrollService
from payql.services.holds import HoldService
from payql.services.idempotency import IdempotencyService
from payql.services.lifecycle import Lifecycle
from payql.services.payments import PaymentService
from payql.services.payouts import PayoutService
from payql.services.reconcile import Reconciler
from payql.services.refunds import RefundService
from payql.services.users import UserService
from payql.services.webhooks import WebhookService
from payql.settings import Settings


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    verifier: TokenVerifier
    providers: dict[ProviderName, PaymentProvider]
    catalogue: Catalogue
    users: UserService
    idempotency: IdempotencyService
    payments: PaymentService
    refunds: RefundService
    enrolls: EnrollService
    credits: CreditService
    webhooks: WebhookService
    holds: HoldService
    payouts: PayoutService
    reconciler: Reconciler
    disputes: DisputeService
    on_close: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Release what bootstrap opened for these services (provider clients, the database engine), once."""
        while self.on_close:
            self.on_close.pop()()


def build_services(settings: Settings, db: Database, providers: dict[ProviderName, PaymentProvider]) -> Services:
    catalogue = Catalogue(settings.credit_packages)
    # an execution holds its key for at most a few provider calls' deadlines; then a retry may take it over
    idempotency = IdempotencyService(db, timedelta(milliseconds=3 * settings.provider_timeout_ms + 2000))
    payments = PaymentService(db, settings, providers, catalogue, idempotency, Lifecycle(settings.credit_expiry_days))
    refunds = RefundService(db, payments, idempotency)
    payouts = PayoutService(db, settings, providers, idempotency)
    enrolls = EnrollService(db, payments, refunds)
    disputes = DisputeService(db, payments)
    reconciler = Reconciler(
        db,
        payments,
        refunds,
        enrolls,
        payouts,
        disputes,
        timedelta(seconds=settings.reconcile_after_seconds),
        lookback=timedelta(days=settings.reconcile_lookback_days),
    )
    return Services(
        settings=settings,
        db=db,
        verifier=TokenVerifier(settings),
        providers=providers,
        catalogue=catalogue,
        users=UserService(db),
        idempotency=idempotency,
        payments=payments,
        refunds=refunds,
        enrolls=enrolls,
        credits=CreditService(db, idempotency),
        webhooks=WebhookService(db, payments, payouts, enrolls, disputes=disputes),
        holds=HoldService(db, payments, timedelta(hours=settings.hold_expiry_margin_hours)),
        payouts=payouts,
        reconciler=reconciler,
        disputes=disputes,
    )

"""Property tests of the money core: any capture and any sequence of partial refunds keeps the books exact."""

from __future__ import annotations

import itertools
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import or_, select

from payql.auth import Principal
from payql.bootstrap import bootstrap
from payql.db import Database
from payql.models import LedgerAccount, LedgerEntry, LedgerTransaction, Refund
from payql.models.enums import CaptureMethod, ProviderName, RefundReason
from payql.money import Money, prorate, split_fee
from payql.providers.base import PaymentProvider
from payql.providers.mock import MockProvider
from payql.services import Services
from payql.services.checks import ledger_problems
from payql.settings import FeePolicy, Settings

COUNTER = itertools.count()


def services_for(db: Database, base: Settings, platform_bps: int, tax_bps: int) -> Services:
    fees = {
        "STRIPE": FeePolicy(platform_bps=platform_bps, tax_bps=tax_bps),
        "YOOKASSA": FeePolicy(platform_bps=0, tax_bps=0),
    }
    configured = base.model_copy(update={"enroll_fees": fees})
    providers: dict[ProviderName, PaymentProvider] = {name: MockProvider(name, db) for name in ProviderName}
    return bootstrap(configured, db=db, providers=providers)


def postings_by_kind(db: Database, payment_id: str) -> dict[str, int]:
    """The net of every entry caused by one payment (its capture, release and refunds), per account kind."""
    with db.read() as session:
        refund_ids = select(Refund.id).where(Refund.payment_id == payment_id)
        rows = session.execute(
            select(LedgerAccount.kind, LedgerEntry.amount_minor)
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(
                or_(
                    LedgerTransaction.cause_id == payment_id,
                    LedgerTransaction.cause_id.in_(refund_ids),
                )
            )
        )
        totals: dict[str, int] = defaultdict(int)
        for kind, amount in rows:
            totals[kind.value] += amount
        return dict(totals)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    currency=st.sampled_from(["JPY", "USD", "KWD"]),
    amount=st.integers(min_value=1, max_value=10**9),
    platform_bps=st.integers(min_value=0, max_value=10_000),
    tax_bps=st.integers(min_value=0, max_value=10_000),
    automatic=st.booleans(),
    refunds_before_completion=st.integers(min_value=0, max_value=2),
    fractions=st.lists(st.integers(min_value=1, max_value=1000), max_size=5),
)
def test_capture_and_partial_refunds_keep_the_ledger_exact(
    db: Database,
    settings: Settings,
    currency: str,
    amount: int,
    platform_bps: int,
    tax_bps: int,
    automatic: bool,
    refunds_before_completion: int,
    fractions: list[int],
) -> None:
    services = services_for(db, settings, platform_bps, tax_bps)
    n = next(COUNTER)
    client = Principal(f"client-{n}", frozenset())
    provider = Principal(f"provider-{n}", frozenset({"provider"}))
    for user in (client, provider):
        services.users.ensure(user)
    enroll = services.enrolls.create_enroll(client, provider.user_id, "Lesson", Money(amount, currency))
    capture = CaptureMethod.AUTOMATIC if automatic else CaptureMethod.MANUAL
    payment = services.payments.create_intent(
        client,
        enroll_id=enroll.id,
        package_code=None,
        provider=ProviderName.STRIPE,
        capture_method=capture,
        return_url=None,
        idempotency_key=None,
    ).payment
    services.payments.confirm(client, payment.id, None)
    services.enrolls.accept(provider, enroll.id)
    services.enrolls.mark_ready(provider, enroll.id)

    refunded = before_completion = 0
    completed = not automatic  # a hold must be captured by completion before anything can be refunded
    if completed:
        services.enrolls.confirm(client, enroll.id)
    for index, fraction in enumerate(fractions):
        if not completed and index == refunds_before_completion:
            if refunded < amount:  # a payment refunded in full from escrow leaves nothing to complete
                services.enrolls.confirm(client, enroll.id)
            completed, before_completion = True, refunded
        left = amount - refunded
        if left == 0:
            break
        part = max(1, left * fraction // 1000)
        services.refunds.refund_payment(
            provider, payment.id, Money(part, currency), RefundReason.REQUESTED_BY_CUSTOMER, None, None
        )
        refunded += part
    if not completed and refunded < amount:  # a payment refunded in full from escrow leaves nothing to complete
        services.enrolls.confirm(client, enroll.id)
    if not completed:
        before_completion = refunded

    with db.read() as session:
        assert ledger_problems(session) == []
    # the split is taken at completion on what escrow still held (all of it for a hold captured then)
    base = amount - before_completion
    fee, tax, payee = split_fee(base, platform_bps, tax_bps)
    after = refunded - before_completion
    posted = postings_by_kind(db, payment.id)
    assert sum(posted.values()) == 0
    assert posted.get("provider_cash", 0) == amount - refunded
    assert posted.get("escrow", 0) == 0  # completed: nothing waits in escrow
    # revenue and tax never give back more than they took, and everything nets to what is left
    assert -fee <= posted.get("revenue", 0) <= 0
    assert -tax <= posted.get("tax", 0) <= 0
    assert posted.get("revenue", 0) + posted.get("tax", 0) + posted.get("payable", 0) == -(amount - refunded)
    if base == 0:
        assert posted.get("revenue", 0) == posted.get("tax", 0) == posted.get("payable", 0) == 0
        return
    reversed_fee = prorate(after, base, fee)
    reversed_tax = prorate(after, base, tax)
    assert posted.get("revenue", 0) == -(fee - reversed_fee)
    assert posted.get("tax", 0) == -(tax - reversed_tax)
    assert posted.get("payable", 0) == -(payee - (after - reversed_fee - reversed_tax))

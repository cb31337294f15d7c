"""`payments { totalCount }` reads counters kept with the payments (models/counts.py): they must be exact.

Every test's `db` fixture also compares the counters with a recount when the test ends, so each end-to-end flow
(failures, refunds, disputes, crashes) checks them too; these tests name the cases.
"""

from __future__ import annotations

from typing import Any

import documents as doc
import flows
from sqlalchemy import delete, func, select
from support import Api
from support import User as Caller

from payql.db import Database
from payql.models import Payment, PaymentCount, User, counts, new_id
from payql.models.enums import CaptureMethod, PaymentPurpose, PaymentStatus, ProviderName
from payql.services.lifecycle import Lifecycle


def listed(user: Caller, **filters: Any) -> tuple[int, int]:
    """A user's totalCount, and how many payments their pages list, with those filters."""
    seen, after, total = 0, None, -1
    while True:
        page = user.data(doc.PAYMENTS, first=2, after=after, **filters)["payments"]
        total = page["totalCount"]
        seen += len(page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return total, seen
        after = page["pageInfo"]["endCursor"]


def new_payment(key: str, purpose: PaymentPurpose, *, payer: str, payee: str | None = None) -> Payment:
    """A pending payment of 1.00 USD written straight through the ORM (the API refuses some of these cases)."""
    return Payment(
        id=new_id("pay"),
        purpose=purpose,
        provider=ProviderName.STRIPE,
        capture_method=CaptureMethod.AUTOMATIC,
        currency="USD",
        amount_minor=100,
        payer_id=payer,
        payee_id=payee,
        provider_key=key,
    )


def test_total_count_is_what_the_pages_list_for_every_user_status_and_purpose(api: Api, db: Database) -> None:
    # given a client who paid two enrolls (one held, one captured and then refunded in part) and a package,
    # a second client with one enroll paid, and a payment whose creation failed
    client, other, mentor = api.user("client"), api.user("other"), api.user("mentor", "provider")
    flows.paid_enroll(client, mentor, capture="MANUAL")
    captured = flows.paid_enroll(client, mentor, amount="80.00")
    flows.paid_package(client)
    flows.paid_enroll(other, mentor, amount="30.00")
    mentor.ok(doc.REFUND, input={"paymentId": captured["id"], "amount": {"amount": "10.00", "currency": "USD"}})
    failed = flows.intent(client, enrollId=flows.book(client, mentor), provider="STRIPE")["payment"]["id"]
    with db.uow() as uow:
        payment = uow.session.get(Payment, failed)
        assert payment is not None
        Lifecycle.fail_creation(payment, "card_declined", "declined")
        uow.commit()

    # then each user's totalCount, with any filter, is what their pages list
    for user in (client, other, mentor):
        for filters in ({}, {"purpose": "ENROLL"}, {"purpose": "PACKAGE"}, *({"status": s} for s in PaymentStatus)):
            total, seen = listed(user, **filters)
            assert total == seen, (user.id, filters)
    assert listed(client) == (4, 4)
    assert listed(mentor) == (4, 4)
    assert listed(client, status="PARTIALLY_REFUNDED") == (1, 1)
    assert listed(client, status="FAILED", purpose="ENROLL") == (1, 1)
    with db.read() as session:
        assert counts.differences(session.connection()) == []


def test_a_payment_whose_payer_is_its_payee_counts_once_and_moves_with_its_status(db: Database) -> None:
    # given a payment from a user to themselves (the API refuses one; the counters must not double it anyway)
    with db.uow() as uow:
        uow.session.add(User(id="u1"))
        uow.session.flush()
        uow.session.add(new_payment("k1", PaymentPurpose.ENROLL, payer="u1", payee="u1"))
        uow.commit()
    with db.read() as session:
        assert counts.count_for(session.connection(), "u1", None, None) == 1
        assert counts.count_for(session.connection(), "u1", "PENDING", "ENROLL") == 1

    # when its status moves (loaded afresh: the old status is read on change)
    with db.uow() as uow:
        payment = uow.session.scalars(select(Payment)).one()
        uow.session.expire(payment)
        payment.status = PaymentStatus.CANCELED
        uow.commit()

    # then it is counted once, under its new status
    with db.read() as session:
        assert counts.count_for(session.connection(), "u1", None, None) == 1
        assert counts.count_for(session.connection(), "u1", "PENDING", None) == 0
        assert counts.count_for(session.connection(), "u1", "CANCELED", "ENROLL") == 1


def test_a_payee_set_after_the_payment_was_written_is_counted_from_then(db: Database) -> None:
    # given a package payment (no payee) and a second payment in the same flush whose keys do not change
    with db.uow() as uow:
        uow.session.add_all([User(id="payer"), User(id="payee")])
        uow.session.flush()
        uow.session.add_all([new_payment(key, PaymentPurpose.PACKAGE, payer="payer") for key in ("k1", "k2")])
        uow.commit()

    # when one gets a payee and another purpose (its old payee was None), and the other only a new amount
    with db.uow() as uow:
        first, second = uow.session.scalars(select(Payment).order_by(Payment.provider_key)).all()
        first.payee_id = "payee"
        first.purpose = PaymentPurpose.ENROLL
        second.amount_minor = 200
        uow.commit()

    # then the payee counts the first from now, and the payer's counters moved with its purpose
    with db.read() as session:
        assert counts.count_for(session.connection(), "payee", None, None) == 1
        assert counts.count_for(session.connection(), "payee", "PENDING", "ENROLL") == 1
        assert counts.count_for(session.connection(), "payer", None, "PACKAGE") == 1
        assert counts.count_for(session.connection(), "payer", None, "ENROLL") == 1
        assert counts.differences(session.connection()) == []


def test_a_unit_of_work_that_rolls_back_moves_no_counter(api: Api, db: Database) -> None:
    # given a captured payment
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment_id = flows.paid_enroll(client, mentor)["id"]
    with db.read() as session:
        before = sorted(session.execute(select(PaymentCount.__table__)).all())

    # when a unit of work changes its status, flushes, and does not commit
    with db.uow() as uow:
        payment = uow.session.get(Payment, payment_id)
        assert payment is not None
        payment.status = PaymentStatus.REFUNDED
        uow.session.flush()

    # then nothing moved, and the next commit of that session's kind writes only its own changes
    with db.read() as session:
        assert sorted(session.execute(select(PaymentCount.__table__)).all()) == before
    assert listed(client, status="SUCCEEDED") == (1, 1)
    assert listed(client, status="REFUNDED") == (0, 0)


def test_rebuild_recounts_the_same_counters(api: Api, db: Database) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    flows.paid_enroll(client, mentor)
    flows.paid_enroll(client, mentor, capture="MANUAL")
    flows.paid_package(client)
    with db.read() as session:
        kept = sorted(session.execute(select(PaymentCount.__table__).where(PaymentCount.count != 0)).all())

    with db.uow() as uow:
        uow.session.execute(delete(PaymentCount))
        counts.rebuild(uow.session.connection())
        uow.commit()

    # then the same non-zero counters, each in its payment's shard (a moved status leaves a zero behind)
    with db.read() as session:
        assert sorted(session.execute(select(PaymentCount.__table__)).all()) == kept
        assert session.scalar(select(func.sum(PaymentCount.count))) == 5  # 3 payments: the client's 3, mentor's 2

"""Group commit of webhook deliveries (payql/services/webhooks.py, `_apply_group`): deliveries whose payments are
ready to apply while another group's transaction runs are applied together, in one transaction, and a group that
cannot commit is applied again one delivery at a time, so that one delivery's trouble stays its own.

To make a group without racing the clock, the test holds the first payment's row lock (as a concurrent writer
would), so that the first delivery's group waits in its transaction while the others arrive; `/metrics`'
`payql_webhook_group_size` says how the deliveries were grouped. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import documents as doc
import httpx
import pytest
from conftest import STRIPE_WEBHOOK_SECRET, stripe_api, stripe_fake
from fakes.stripe_api import FakeStripe
from flows import book, intent
from sqlalchemy import func, select
from support import Api

from payql.db import Database
from payql.models import LedgerTransaction, Payment, WebhookEvent, new_id, utcnow
from payql.models.enums import ProviderName, WebhookStatus

fake, api = stripe_fake, stripe_api  # the conftest fixtures, under this module's names


def paid(api: Api, fake: FakeStripe, count: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` Stripe enroll payments that the payer has paid at the fake: (payment id, its succeeded event)."""
    client = api.user("client")
    made = []
    for n in range(count):
        mentor = api.user(f"mentor-{n}", "provider")
        created = intent(client, enrollId=book(client, mentor), provider="STRIPE", captureMethod="AUTOMATIC")
        intent_id = created["clientSecret"].split("_secret_")[0]
        fake.customer_pays(intent_id, "pm_card_visa")
        (event,) = [e for e in fake.events_of("payment_intent.succeeded") if e["data"]["object"]["id"] == intent_id]
        made.append((created["payment"]["id"], event))
    return made


def intent_of(event: dict[str, Any]) -> str:
    obj = event["data"]["object"]
    return str(obj["payment_intent"] if obj["object"] == "refund" else obj["id"])


def refetches(fake: FakeStripe, events: list[dict[str, Any]]) -> int:
    paths = {f"/v1/payment_intents/{intent_of(event)}" for event in events}
    return sum(1 for r in fake.requests if r.method == "GET" and r.path in paths)


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def group_sizes(api: Api) -> tuple[int, int]:
    """How many groups committed, and how many deliveries they held (`payql_webhook_group_size`)."""
    text = api.request("GET", "/metrics").text
    count = re.search(r"^payql_webhook_group_size_count (\S+)$", text, re.MULTILINE)
    total = re.search(r"^payql_webhook_group_size_sum (\S+)$", text, re.MULTILINE)
    assert count, "no payql_webhook_group_size in /metrics"
    assert total, "no payql_webhook_group_size in /metrics"
    return int(float(count.group(1))), int(float(total.group(1)))


@contextmanager
def first_held(
    api: Api, fake: FakeStripe, db: Database, made: list[tuple[str, dict[str, Any]]], *, logged: str | None = None
) -> Iterator[list[httpx.Response]]:
    """Deliver every event at once, the first alone first, while the first payment's row is locked here; once
    every delivery has re-fetched its payment (and waits to be applied), the lock is let go. `logged`: a dedupe
    key whose delivery row another process writes meanwhile (in the same transaction as the lock)."""
    answers: list[httpx.Response] = [None] * len(made)  # type: ignore[list-item]

    def send(index: int) -> None:
        body, headers = fake.signed_delivery(made[index][1], STRIPE_WEBHOOK_SECRET)
        answers[index] = api.request("POST", "/webhooks/stripe", content=body, headers=headers)

    events = [event for _, event in made]
    before = refetches(fake, events)  # an event's payment may have been read before (an earlier delivery)
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(made))]
    try:
        with db.uow() as uow:
            uow.session.execute(select(Payment.id).where(Payment.id == made[0][0]).with_for_update()).all()
            if logged is not None:
                now = utcnow()
                uow.session.add(
                    WebhookEvent(
                        id=new_id("whk"),
                        provider=ProviderName.STRIPE,
                        dedupe_key=logged,
                        event_type="payment_intent.succeeded",
                        payload="{}",
                        headers="{}",
                        status=WebhookStatus.PROCESSED,
                        attempts=1,
                        received_at=now,
                        processed_at=now,
                    )
                )
                uow.session.flush()
            threads[0].start()
            wait_for(lambda: refetches(fake, events) >= before + 1, "the first delivery's re-fetch")
            time.sleep(0.3)  # it is now in its transaction, waiting for the lock
            for thread in threads[1:]:
                thread.start()
            wait_for(lambda: refetches(fake, events) >= before + len(made), "every delivery's re-fetch")
            time.sleep(0.5)  # each is now queued behind the first group
            uow.commit()
    finally:  # the lock is let go (committed, or rolled back on a failure): every delivery ends
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(30)
    yield answers


def escrows(db: Database, payment_id: str) -> int:
    with db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.cause_id == payment_id, LedgerTransaction.kind == "escrow")
            )
            or 0
        )


def test_deliveries_that_arrive_while_a_group_commits_are_applied_together_in_the_next(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    made = paid(api, fake, 6)
    client = api.user("client")

    with first_held(api, fake, db, made) as answers:
        pass

    assert [a.status_code for a in answers] == [200] * 6
    assert [a.json()["status"] for a in answers] == ["processed"] * 6
    assert group_sizes(api) == (2, 6)  # the first alone (it found no group running), then the other five together
    for payment_id, _ in made:
        assert client.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "SUCCEEDED"
        assert escrows(db, payment_id) == 1
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 6
    # (the `db` fixture checks the ledger and the payment counters after the test)


def test_a_group_that_cannot_commit_is_applied_one_delivery_at_a_time(
    api: Api, fake: FakeStripe, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    made = paid(api, fake, 5)
    client = api.user("client")
    taken_id, taken = made[2]  # another process records this delivery first (as a replica would)

    with first_held(api, fake, db, made, logged=taken["id"]) as answers:
        pass

    statuses = [a.json()["status"] for a in answers]
    assert statuses == ["processed", "processed", "duplicate", "processed", "processed"]
    # the group of four rolled back on the duplicate's row; the three others then committed one by one
    assert "a group of 4 webhook deliveries rolled back (_Duplicate): each is applied alone" in caplog.text
    assert group_sizes(api) == (4, 4)
    for payment_id, _ in made:
        state = client.data(doc.PAYMENT, id=payment_id)["payment"]["status"]
        # the duplicate's payment is the other process's to apply: this one wrote nothing for it
        assert (state, escrows(db, payment_id)) == (("PENDING", 0) if payment_id == taken_id else ("SUCCEEDED", 1))


def test_a_refund_that_settles_late_is_applied_in_a_group_with_captures(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    """A group reads each payment's refunded sum ahead, in one statement; a delivery whose re-fetch carries refunds
    changes the refund rows after that read, so its payment reads them again (`Lifecycle.settle`)."""
    made = paid(api, fake, 3)
    client, mentor = api.user("client"), api.user("mentor-0", "provider")
    refunded_id, succeeded = made[0]
    body, headers = fake.signed_delivery(succeeded, STRIPE_WEBHOOK_SECRET)
    assert api.request("POST", "/webhooks/stripe", content=body, headers=headers).json()["status"] == "processed"
    fake.refunds_pending = True
    ask = {"paymentId": refunded_id, "amount": {"amount": "30.00", "currency": "USD"}}
    pending = mentor.ok(doc.REFUND, input=ask)["refund"]
    assert pending["status"] == "PENDING"
    (stripe_refund,) = fake.refunds
    fake.settle_refund(stripe_refund)  # it succeeds at Stripe; the refund's event follows
    (settled,) = fake.events_of("refund.updated")
    new_ones = paid(api, fake, 3)

    # the first new payment is held; the other two and the refund's event make the next group
    with first_held(api, fake, db, [new_ones[0], new_ones[1], (refunded_id, settled), new_ones[2]]) as answers:
        pass

    assert [a.json()["status"] for a in answers] == ["processed"] * 4
    assert group_sizes(api) == (1 + 1 + 1, 1 + 1 + 3)  # the earlier delivery, the held one, then three together
    payment = client.data(doc.PAYMENT, id=refunded_id)["payment"]
    assert payment["status"] == "PARTIALLY_REFUNDED"
    assert payment["refundedAmount"]["amount"] == "30.00"
    with db.read() as session:
        refunds_posted = session.scalar(
            select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == "refund")
        )
    assert refunds_posted == 1
    for payment_id, _ in new_ones:
        assert client.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "SUCCEEDED"
        assert escrows(db, payment_id) == 1


def test_a_retry_of_a_failed_delivery_is_processed_once_in_a_group(api: Api, fake: FakeStripe, db: Database) -> None:
    """A delivery that failed (Stripe could not be read) is recorded FAILED; its retry, arriving in a group, moves
    that row on (the group's insert covers only new deliveries) and applies its payment once."""
    made = paid(api, fake, 4)
    client = api.user("client")
    _, retried = made[2]
    fake.fail_next(count=1, status=500, path_prefix=f"/v1/payment_intents/{intent_of(retried)}", method="GET")
    body, headers = fake.signed_delivery(retried, STRIPE_WEBHOOK_SECRET)
    first = api.request("POST", "/webhooks/stripe", content=body, headers=headers)
    assert first.status_code == 500
    with db.read() as session:
        row = session.scalars(select(WebhookEvent).where(WebhookEvent.dedupe_key == retried["id"])).one()
        assert (row.status, row.attempts) == (WebhookStatus.FAILED, 1)

    with first_held(api, fake, db, made) as answers:
        pass

    assert [a.json()["status"] for a in answers] == ["processed"] * 4
    assert group_sizes(api) == (2, 4)  # the first alone, then three together, the retry among them
    with db.read() as session:
        row = session.scalars(select(WebhookEvent).where(WebhookEvent.dedupe_key == retried["id"])).one()
        assert (row.status, row.attempts, row.error) == (WebhookStatus.PROCESSED, 2, None)
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 4
    for payment_id, _ in made:
        assert client.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "SUCCEEDED"
        assert escrows(db, payment_id) == 1

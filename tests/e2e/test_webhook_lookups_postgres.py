"""Look-ups of webhook deliveries arriving at the same moment run together (payql/services/webhooks.py,
`_look_up_group`): two statements for the group (their payments by our ids, their log rows), one more for a
delivery that names its payment by the provider's id only, and each delivery ends as it would alone: processed,
duplicate or ignored.

To make the group without racing the clock, the test locks the log table (`LOCK TABLE … ACCESS EXCLUSIVE`, which
even a read waits for) while the first delivery looks up; the others queue behind it. PostgreSQL only: SQLite's
readers never wait for a writer.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import pytest
from conftest import STRIPE_WEBHOOK_SECRET, stripe_api, stripe_fake
from fakes.stripe_api import FakeStripe
from sqlalchemy import event, text
from support import Api
from test_webhook_groups import paid, wait_for

from payql.db import Database

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgres"], indirect=True)]
fake, api = stripe_fake, stripe_api  # the conftest fixtures, under this module's names


def waiting_on_a_lock(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(connection.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")) or 0)


def test_look_ups_arriving_together_run_together_and_each_delivery_ends_as_alone(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    (_, _), (b, _), (_, _), (d, _) = made = paid(api, fake, 4)
    events = [found for _, found in made]
    by_ref = copy.deepcopy(events[2])  # C's payment named by Stripe's id only (its metadata lost our id)
    by_ref["id"] = "evt_by_ref_only"
    del by_ref["data"]["object"]["metadata"]["payment_id"]
    stranger = copy.deepcopy(events[1])  # a PaymentIntent that is not ours at all
    stranger["id"] = "evt_stranger"
    stranger["data"]["object"].update(id="pi_not_ours", metadata={})
    answers: dict[str, str] = {}

    def send(delivered: dict[str, Any]) -> None:
        body, headers = fake.signed_delivery(delivered, STRIPE_WEBHOOK_SECRET)
        answers[delivered["id"]] = api.request("POST", "/webhooks/stripe", content=body, headers=headers).json()[
            "status"
        ]

    send(events[3])  # D's event, delivered before: the group's one is a duplicate
    assert answers[events[3]["id"]] == "processed"
    statements: list[tuple[str, Any]] = []

    def note(_conn: object, _cursor: object, statement: str, parameters: Any, *_rest: object) -> None:
        statements.append((" ".join(statement.split()), parameters))

    first = threading.Thread(target=send, args=(events[0],))
    later = [threading.Thread(target=send, args=(e,)) for e in (events[1], by_ref, events[3], stranger)]
    event.listen(db.engine, "before_cursor_execute", note)
    try:
        with db.uow() as uow:
            uow.session.execute(text("LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE"))
            first.start()
            wait_for(lambda: waiting_on_a_lock(db) >= 1, "the first look-up to wait for the lock")
            for thread in later:
                thread.start()
            time.sleep(0.5)  # they queue behind the first look-up
            uow.commit()
    finally:
        for thread in [first, *later]:
            if thread.ident is not None:  # started
                thread.join(30)
        event.remove(db.engine, "before_cursor_execute", note)

    assert answers == {
        events[0]["id"]: "processed",
        events[1]["id"]: "processed",
        "evt_by_ref_only": "processed",
        events[3]["id"]: "duplicate",
        "evt_stranger": "ignored",
    }
    logged = [params for sql, params in statements if sql.startswith("SELECT webhook_events.dedupe_key, ")]
    assert len(logged) == 1  # one read of the log for the four that queued
    assert sorted(v for k, v in logged[0].items() if k.startswith("keys")) == sorted(
        [events[1]["id"], "evt_by_ref_only", events[3]["id"], "evt_stranger"]
    )
    by_ids = [params for sql, params in statements if sql.startswith("SELECT payments.id, payments.provider, ")]
    assert len(by_ids) == 1
    # by our ids: B's and D's; C's event names Stripe's id only, and was found by it
    assert sorted(v for k, v in by_ids[0].items() if k.startswith("ids")) == sorted([b, d])
    by_ref_reads = [params for sql, params in statements if "payments.provider_payment_id = " in sql]
    assert sorted(params["ref"] for params in by_ref_reads) == sorted(
        [events[2]["data"]["object"]["id"], "pi_not_ours"]
    )

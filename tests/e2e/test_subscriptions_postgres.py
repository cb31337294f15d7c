"""Two payql servers on one PostgreSQL database, as two replicas: a change committed through one reaches a
subscriber connected to the other (LISTEN/NOTIFY), and so does one committed by a command in a third process.
Collected only with TEST_POSTGRES_URL (conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import documents as doc
import pytest
from conftest import TEST_SECRET, make_settings
from flows import intent
from live_client import PAYMENT_UPDATED, LiveClient
from servers import Server, servers

from payql.db import Database
from payql.models import Payment

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgres"], indirect=True)]


@pytest.fixture
def pair(database_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    env = {
        "DATABASE_URL": database_url,
        "PAYQL_ENV": "test",
        "JWT_SECRET": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT": "10000/minute",
    }
    with servers(2, env, tmp_path) as started:
        yield started


def test_a_change_through_one_server_reaches_a_subscriber_of_the_other(
    pair: list[Server], database_url: str, db: Database
) -> None:
    settings = make_settings(database_url)
    first, second = pair
    payer = first.api(settings).user("pg-payer")
    payment_id = intent(payer, packageCode="standard")["payment"]["id"]
    with LiveClient(second.url) as live:
        assert live.init(payer.token) == {"type": "connection_ack"}
        live.subscribe("1", PAYMENT_UPDATED, id=payment_id)
        assert live.recv()["payload"]["data"]["paymentUpdated"]["status"] == "PENDING"

        payer.ok(doc.CONFIRM, paymentId=payment_id)  # through the first server
        update = live.recv()
        assert (update["id"], update["type"]) == ("1", "next")
        assert update["payload"]["data"]["paymentUpdated"]["status"] == "SUCCEEDED"

        live.subscribe("2", "subscription($id: ID!) { paymentUpdated(id: $id) { failureMessage } }", id=payment_id)
        assert live.recv()["payload"]["data"]["paymentUpdated"] == {"failureMessage": None}
        with db.uow() as uow:  # a third process's commit (as a job's or reconcile's): this test's own
            payment = uow.session.get(Payment, payment_id)
            assert payment is not None
            payment.failure_message = "noted"
            uow.commit()
        update = live.recv()  # only "2" shows what changed: "1" sends nothing new
        assert update["id"] == "2"
        assert update["payload"]["data"]["paymentUpdated"] == {"failureMessage": "noted"}

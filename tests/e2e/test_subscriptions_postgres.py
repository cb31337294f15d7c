"""Two payql servers on one PostgreSQL database, as two replicas: a change committed through one reaches a
subscriber connected to the other (LISTEN/NOTIFY), and so does one committed by a command in a third process.
Collected only with TEST_POSTGRES_URL (conftest)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import documents as doc
import pytest
from conftest import make_settings
from flows import intent
from live_client import PAYMENT_UPDATED, LiveClient
from servers import Server, server_env, servers
from sqlalchemy import text
from support import Api

from payql.db import Database
from payql.live import Live
from payql.models import Payment

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgres"], indirect=True)]


@pytest.fixture
def pair(database_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    with servers(2, server_env(database_url), tmp_path) as started:
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


def test_a_server_listens_from_its_first_subscription_on(pair: list[Server], database_url: str, db: Database) -> None:
    """A server no client subscribes to (one that only takes webhooks, say) does not receive every change of every
    process: it opens its LISTEN connection at its first subscription, which then sees the changes committed
    elsewhere as any subscription does."""
    settings = make_settings(database_url)
    first, second = pair

    def listeners() -> int:
        with db.uow() as uow:
            count = uow.session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN payql_live'"))
            uow.commit()
        return int(count or 0)

    payer = first.api(settings).user("pg-lazy")
    payment_id = intent(payer, packageCode="standard")["payment"]["id"]
    before = listeners()  # both servers are up, have served requests, and nothing subscribed yet
    with LiveClient(second.url) as live:
        assert live.init(payer.token) == {"type": "connection_ack"}
        live.subscribe("1", PAYMENT_UPDATED, id=payment_id)
        assert live.recv()["payload"]["data"]["paymentUpdated"]["status"] == "PENDING"
        for _ in range(100):  # its listener connects beside the subscription's first read
            if listeners() > before:
                break
            time.sleep(0.05)
        assert listeners() == before + 1  # the subscribed server's own, and no other
        payer.ok(doc.CONFIRM, paymentId=payment_id)  # through the first server, which does not listen
        update = live.recv()
        while update["payload"]["data"]["paymentUpdated"]["status"] == "PENDING":  # the read once it listened
            update = live.recv()
        assert update["payload"]["data"]["paymentUpdated"]["status"] == "SUCCEEDED"


def test_the_listener_reconnects_and_subscribers_read_again(database_url: str, db: Database, api: Api) -> None:
    """The server's LISTEN connection is cut (a PostgreSQL restart, a failover): it reconnects, every subscription
    reads again (a change may have been missed), and later commits reach them as before."""
    settings = make_settings(database_url)

    def cut() -> int:
        with db.uow() as uow:
            cut_count = uow.session.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query = 'LISTEN payql_live' AND pid <> pg_backend_pid()"
                )
            )
            uow.commit()
        return int(cut_count or 0)

    def commit_change() -> None:
        with db.uow() as uow:
            payment = uow.session.get(Payment, payment_id)
            assert payment is not None
            payment.failure_message = "after the reconnect"
            uow.commit()

    payment_id = intent(api.user("pg-reconnect"), packageCode="trial")["payment"]["id"]

    async def scenario() -> None:
        live = Live(settings)
        await live.start()
        try:
            watch = live.watch({("payment", payment_id)})
            await asyncio.wait_for(live.listening.wait(), 10)  # it listens from its first subscription on
            await asyncio.wait_for(watch.changed.wait(), 5)  # and every subscription reads again then
            watch.changed.clear()
            assert await asyncio.to_thread(cut) >= 1
            await asyncio.wait_for(watch.changed.wait(), 10)  # woken by the reconnect itself
            assert live.listening.is_set()
            watch.changed.clear()
            await asyncio.to_thread(commit_change)
            await asyncio.wait_for(watch.changed.wait(), 5)
        finally:
            await live.stop()

    asyncio.run(scenario())

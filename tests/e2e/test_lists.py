"""Relay connections: pages, cursors, filters, totals, and a constant number of SQL statements per page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import documents as doc
from flows import intent, paid_enroll, paid_package
from sqlalchemy import event
from support import Api, User

from payql.db import Database


def pages(user: User, **filters: Any) -> list[list[str]]:
    seen: list[list[str]] = []
    after = None
    while True:
        page = user.data(doc.PAYMENTS, first=4, after=after, **filters)["payments"]
        seen.append([edge["node"]["id"] for edge in page["edges"]])
        if not page["pageInfo"]["hasNextPage"]:
            return seen
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]


def test_payments_page_newest_first_with_cursors_and_a_total(api: Api) -> None:
    buyer = api.user("buyer")
    created = [intent(buyer, packageCode="trial")["payment"]["id"] for _ in range(10)]

    walked = pages(buyer)

    assert [len(page) for page in walked] == [4, 4, 2]
    assert [payment_id for page in walked for payment_id in page] == created[::-1]
    assert buyer.data(doc.PAYMENTS, first=4)["payments"]["totalCount"] == 10
    assert buyer.data(doc.PAYMENTS, first=0)["payments"]["edges"] == []


def test_payments_filter_by_status_and_purpose(api: Api) -> None:
    client, provider = api.user("client"), api.user("provider", "provider")
    enroll_payment = paid_enroll(client, provider)
    package_payment = paid_package(client)
    pending = intent(client, packageCode="trial")["payment"]

    def ids(**filters: Any) -> list[str]:
        page = client.data(doc.PAYMENTS, **filters)["payments"]
        assert page["totalCount"] == len(page["edges"])
        return [edge["node"]["id"] for edge in page["edges"]]

    assert ids(status="SUCCEEDED") == [package_payment["id"], enroll_payment["id"]]
    assert ids(status="PENDING") == [pending["id"]]
    assert ids(purpose="ENROLL") == [enroll_payment["id"]]
    assert ids(purpose="PACKAGE", status="SUCCEEDED") == [package_payment["id"]]
    assert ids(status="REFUNDED") == []
    assert provider.data(doc.PAYMENTS, purpose="PACKAGE")["payments"]["totalCount"] == 0


@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_a_page_costs_the_same_statements_whatever_its_size(api: Api, db: Database) -> None:
    client, provider = api.user("client"), api.user("provider", "provider")
    for _ in range(6):
        payment = paid_enroll(client, provider)
        provider.ok(doc.REFUND, input={"paymentId": payment["id"], "amount": {"amount": "1.00", "currency": "USD"}})
        paid_package(client)

    counts = {}
    for size in (2, 12):
        with counting(db) as statements:
            page = client.data(doc.PAYMENTS, first=size)["payments"]
        assert len(page["edges"]) == size
        assert any(edge["node"]["enroll"] for edge in page["edges"])
        assert any(edge["node"]["refunds"] for edge in page["edges"])
        assert any(edge["node"]["package"] for edge in page["edges"])
        counts[size] = len(statements)

    # the page, its total, the enrolls and the refunds: one statement each
    assert counts[2] == counts[12] == 4, counts

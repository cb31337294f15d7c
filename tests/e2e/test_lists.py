"""Relay connections: pages, cursors, filters, totals, and a constant number of SQL statements per page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import documents as doc
import pytest
from flows import intent, paid_enroll, paid_package
from sqlalchemy import event
from support import Api, User

from payql.app import create_app
from payql.db import Database
from payql.services.queries import LIST_CAP, REFUNDS_CAP
from payql.settings import PackageConfig, Settings


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


def refund(provider: User, payment_id: str, amount: str) -> None:
    provider.ok(doc.REFUND, input={"paymentId": payment_id, "amount": {"amount": amount, "currency": "USD"}})


def test_a_payments_refunds_stop_at_their_cap_and_first_asks_for_fewer(api: Api) -> None:
    client, provider = api.user("client"), api.user("provider", "provider")
    payment = paid_enroll(client, provider)
    for _ in range(REFUNDS_CAP + 1):
        refund(provider, payment["id"], "0.01")

    shown = client.data(
        "query($id: ID!) { payment(id: $id) { refundedAmount { amount } refunds { id } } }", id=payment["id"]
    )
    fewer = client.data("query($id: ID!) { payment(id: $id) { refunds(first: 3) { id } } }", id=payment["id"])
    in_a_page = client.data("{ payments(first: 1) { edges { node { refunds { id } } } } }")
    too_many = client.gql("query($id: ID!) { payment(id: $id) { refunds(first: 21) { id } } }", id=payment["id"])

    assert shown["payment"]["refundedAmount"]["amount"] == "0.21"  # every refund counts, 20 are listed
    assert len(shown["payment"]["refunds"]) == REFUNDS_CAP
    assert fewer["payment"]["refunds"] == shown["payment"]["refunds"][:3]  # the oldest first
    assert in_a_page["payments"]["edges"][0]["node"]["refunds"] == shown["payment"]["refunds"]
    assert [error["extensions"]["code"] for error in too_many["errors"]] == ["INVALID_INPUT"]


def test_credit_lots_and_payout_accounts_stop_at_their_cap(settings: Settings, db: Database) -> None:
    unlimited = settings.model_copy(update={"rate_limit": "1000/minute"})  # 400 requests to get there
    with Api(create_app(unlimited, db=db), unlimited) as api:
        client, provider, admin = api.user("client"), api.user("provider", "provider"), api.user("admin", "admin")
        for _ in range(LIST_CAP + 1):
            paid_package(client, "trial")
        for number in range(LIST_CAP + 1):
            account = {"provider": "STRIPE", "externalAccountId": f"acct_{number:04d}"}
            provider.ok(doc.REGISTER_PAYOUT_ACCOUNT, input=account)

        balances = client.data("{ balances { credits creditLots { id credits } } }")["balances"]
        fewer = client.data("{ balances { creditLots(first: 2) { id } } }")["balances"]["creditLots"]
        own = provider.data("{ payoutAccounts { externalAccountId } }")["payoutAccounts"]
        everyone = admin.data("{ payoutAccounts(first: 5) { externalAccountId } }")["payoutAccounts"]
        too_many = client.gql("{ balances { creditLots(first: 101) { id } } }")

    assert len(balances["creditLots"]) == LIST_CAP
    assert balances["credits"] == (LIST_CAP + 1) * balances["creditLots"][0]["credits"]  # every lot counts
    assert [lot["id"] for lot in fewer] == [lot["id"] for lot in balances["creditLots"][:2]]
    assert [account["externalAccountId"] for account in own] == [f"acct_{number:04d}" for number in range(LIST_CAP)]
    assert [account["externalAccountId"] for account in everyone] == [f"acct_{number:04d}" for number in range(5)]
    assert [error["extensions"]["code"] for error in too_many["errors"]] == ["INVALID_INPUT"]


def test_the_catalogue_stops_at_its_cap(settings: Settings, db: Database) -> None:
    packages = [
        {"code": f"p{number}", "name": f"Pack {number}", "credits": 10, "price": "1.00"}
        for number in range(LIST_CAP + 1)
    ]
    crowded = settings.model_copy(update={"credit_packages": [PackageConfig(**package) for package in packages]})

    with Api(create_app(crowded, db=db), crowded) as api:
        shown = api.graphql("{ packages { code } }")["data"]["packages"]

    assert [package["code"] for package in shown] == [f"p{number}" for number in range(LIST_CAP)]


NESTED = [
    # (a query over the default cost limit now that its nested list counts, the same asking for fewer items)
    (
        "{ payments(first: 100) { edges { node { refunds { id amount { amount } } } } } }",
        "{ payments(first: 100) { edges { node { refunds(first: 2) { id amount { amount } } } } } }",
    ),
    (
        "{ balances { " + " ".join(f"a{i}: creditLots {{ id credits }}" for i in range(25)) + " } }",
        "{ balances { " + " ".join(f"a{i}: creditLots(first: 10) {{ id credits }}" for i in range(25)) + " } }",
    ),
    (
        "{ " + " ".join(f"a{i}: payoutAccounts {{ id status }}" for i in range(25)) + " }",
        "{ " + " ".join(f"a{i}: payoutAccounts(first: 10) {{ id status }}" for i in range(25)) + " }",
    ),
    ("{ " + " ".join(f"a{i}: packages {{ code name }}" for i in range(25)) + " }", "{ packages { code name } }"),
]


@pytest.mark.parametrize(("heavy", "light"), NESTED, ids=["refunds", "creditLots", "payoutAccounts", "packages"])
def test_nested_and_plain_lists_count_in_the_query_cost(api: Api, heavy: str, light: str) -> None:
    provider = api.user("provider", "provider")

    refused = provider.gql(heavy)
    answered = provider.gql(light)

    assert [error["extensions"]["code"] for error in refused["errors"]] == ["QUERY_TOO_COSTLY"]
    assert "data" not in refused
    assert "errors" not in answered, answered

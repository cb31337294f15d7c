"""Credit packages (seeds/004): a lot per paid package, spending soonest-expiring first, expiry, refund clawback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import documents as doc
from flows import paid_package
from support import Api

from payql.app import services_of


def history(user: object) -> list[tuple[str, int, int]]:
    edges = user.data(doc.CREDIT_TRANSACTIONS)["creditTransactions"]["edges"]  # type: ignore[attr-defined]
    return [(e["node"]["type"], e["node"]["credits"], e["node"]["balanceAfter"]) for e in edges]


def test_a_paid_package_grants_its_credits_once_with_an_expiry(api: Api) -> None:
    buyer = api.user("buyer")

    payment = paid_package(buyer, "standard")
    buyer.ok(doc.CONFIRM, paymentId=payment["id"])  # confirming again grants nothing more

    balance = buyer.data(doc.CREDIT_BALANCE)["balances"]
    assert balance["credits"] == 1100
    (lot,) = balance["creditLots"]
    assert (lot["credits"], lot["remaining"], lot["paymentId"]) == (1100, 1100, payment["id"])
    expires = datetime.fromisoformat(lot["expiresAt"])
    paid = datetime.fromisoformat(payment["paidAt"])
    assert expires - paid == timedelta(days=180)
    assert history(buyer) == [("PURCHASED", 1100, 1100)]


def test_spending_takes_the_soonest_expiring_lot_first(api: Api) -> None:
    buyer = api.user("buyer")
    first = paid_package(buyer, "trial")  # 500 credits, expires first
    paid_package(buyer, "standard")  # 1100 credits

    spent = buyer.ok(doc.SPEND_CREDITS, input={"credits": 600, "reference": "lesson-42"})

    assert spent["transaction"]["type"] == "SPENT"
    assert spent["transaction"]["credits"] == -600
    assert spent["transaction"]["balanceAfter"] == 1000
    assert spent["transaction"]["reference"] == "lesson-42"
    lots = {lot["paymentId"]: lot["remaining"] for lot in spent["balance"]["creditLots"]}
    assert first["id"] not in lots  # the trial lot is used up
    assert list(lots.values()) == [1000]
    assert spent["balance"]["credits"] == 1000


def test_spending_more_than_the_balance_is_insufficient_funds_and_changes_nothing(api: Api) -> None:
    buyer = api.user("buyer")
    paid_package(buyer, "trial")

    failed = buyer.fails(doc.SPEND_CREDITS, "INSUFFICIENT_FUNDS", input={"credits": 501})

    assert "500 available" in failed["errors"][0]["message"]
    assert buyer.data(doc.CREDIT_BALANCE)["balances"]["credits"] == 500
    buyer.fails(doc.SPEND_CREDITS, "INVALID_INPUT", input={"credits": 0})
    api.user("nobody").fails(doc.SPEND_CREDITS, "INSUFFICIENT_FUNDS", input={"credits": 1})


def test_a_spend_with_an_idempotency_key_happens_once(api: Api) -> None:
    buyer = api.user("buyer")
    paid_package(buyer, "trial")
    spend = {"credits": 100, "reference": "r", "idempotencyKey": "spend-1"}

    first = buyer.ok(doc.SPEND_CREDITS, input=spend)
    again = buyer.ok(doc.SPEND_CREDITS, input=spend)

    assert again["transaction"]["id"] == first["transaction"]["id"]
    assert again["balance"]["credits"] == 400
    buyer.fails(doc.SPEND_CREDITS, "CONFLICT", input={**spend, "credits": 101})


def test_lapsed_lots_expire_as_breakage(api: Api) -> None:
    buyer = api.user("buyer")
    paid_package(buyer, "trial")
    buyer.ok(doc.SPEND_CREDITS, input={"credits": 120})
    credits = services_of(api.app).credits

    assert credits.expire() == 0  # nothing lapsed yet
    assert credits.expire(now=datetime.now(UTC) + timedelta(days=181)) == 1
    assert credits.expire(now=datetime.now(UTC) + timedelta(days=181)) == 0  # idempotent

    assert buyer.data(doc.CREDIT_BALANCE)["balances"] == {"credits": 0, "creditLots": []}
    assert history(buyer) == [("EXPIRED", -380, 0), ("SPENT", -120, 380), ("PURCHASED", 500, 500)]


def test_an_admin_refund_takes_back_the_unspent_credits_and_keeps_the_spent_ones_paid(api: Api) -> None:
    buyer, admin = api.user("buyer"), api.user("admin", "admin")
    payment = paid_package(buyer, "standard")  # 100.00 CNY for 1100 credits
    buyer.ok(doc.SPEND_CREDITS, input={"credits": 330})

    refunded = admin.ok(doc.REFUND, input={"paymentId": payment["id"]})

    # 770 of 1100 credits unspent: ⌊100.00 × 770 / 1100⌋ = 70.00 back
    assert refunded["refund"]["amount"] == {"amount": "70.00", "currency": "CNY"}
    assert refunded["payment"]["status"] == "PARTIALLY_REFUNDED"
    assert buyer.data(doc.CREDIT_BALANCE)["balances"] == {"credits": 0, "creditLots": []}
    assert history(buyer)[0] == ("REFUNDED", -770, 0)
    # nothing more to take back by default; an explicit amount can still refund the rest
    admin.fails(doc.REFUND, "INVALID_INPUT", input={"paymentId": payment["id"]})
    rest = admin.ok(doc.REFUND, input={"paymentId": payment["id"], "amount": {"amount": "30.00", "currency": "CNY"}})
    assert rest["payment"]["status"] == "REFUNDED"


def test_an_admin_can_refund_the_full_price_explicitly(api: Api) -> None:
    buyer, admin = api.user("buyer"), api.user("admin", "admin")
    payment = paid_package(buyer, "trial")
    buyer.ok(doc.SPEND_CREDITS, input={"credits": 100})

    refunded = admin.ok(
        doc.REFUND, input={"paymentId": payment["id"], "amount": {"amount": "50.00", "currency": "CNY"}}
    )

    assert refunded["payment"]["status"] == "REFUNDED"
    assert history(buyer)[0] == ("REFUNDED", -400, 0)


def test_credit_history_pages_newest_first(api: Api) -> None:
    buyer = api.user("buyer")
    paid_package(buyer, "trial")
    for _ in range(3):
        buyer.ok(doc.SPEND_CREDITS, input={"credits": 10})

    page = buyer.data(doc.CREDIT_TRANSACTIONS, first=2)["creditTransactions"]

    assert page["totalCount"] == 4
    assert page["pageInfo"]["hasNextPage"] is True
    assert [edge["node"]["balanceAfter"] for edge in page["edges"]] == [470, 480]
    rest = buyer.data(doc.CREDIT_TRANSACTIONS, first=5, after=page["pageInfo"]["endCursor"])["creditTransactions"]
    assert [edge["node"]["type"] for edge in rest["edges"]] == ["SPENT", "PURCHASED"]
    assert api.user("other").data(doc.CREDIT_TRANSACTIONS)["creditTransactions"]["totalCount"] == 0

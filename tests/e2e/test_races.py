"""Conflicting money movements fired at once stay correct (SQLite's single writer, PostgreSQL's row locks)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import documents as doc
from flows import paid_enroll, paid_package
from support import Api


def test_twenty_concurrent_partial_refunds_never_exceed_the_capture(api: Api) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment = paid_enroll(client, mentor, amount="100.00")
    ask = {"paymentId": payment["id"], "amount": {"amount": "7.00", "currency": "USD"}}

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: mentor.data(doc.REFUND, input=ask)["refund"], range(20)))

    codes = [a["errors"][0]["code"] if a["errors"] else "OK" for a in answers]
    assert codes.count("OK") == 14  # 14 × 7.00 = 98.00; a fifteenth would exceed 100.00
    assert set(codes) == {"OK", "INVALID_INPUT"}
    final = client.data(doc.PAYMENT, id=payment["id"])["payment"]
    assert final["refundedAmount"]["amount"] == "98.00"
    assert len(final["refunds"]) == 14


def test_the_same_confirmation_fired_at_once_captures_once(api: Api) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment = paid_enroll(client, mentor, capture="MANUAL")
    enroll_id = payment["enroll"]["id"]
    mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    mentor.ok(doc.MARK_ENROLL_READY, id=enroll_id)

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: client.data(doc.CONFIRM_ENROLL, id=enroll_id)["confirmEnroll"], range(4)))

    assert sum(not a["errors"] for a in answers) >= 1
    assert {a["errors"][0]["code"] for a in answers if a["errors"]} <= {"INVALID_STATE"}
    balance = mentor.data(doc.BALANCES)["balances"]["accounts"]
    assert [a["available"]["amount"] for a in balance] == ["95.00"]  # split once, whatever the races


def test_concurrent_credit_spends_never_take_more_than_the_balance(api: Api) -> None:
    buyer = api.user("buyer")
    paid_package(buyer, "trial")  # 500 credits

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(lambda _: buyer.data(doc.SPEND_CREDITS, input={"credits": 200})["spendCredits"], range(6))
        )

    codes = [a["errors"][0]["code"] if a["errors"] else "OK" for a in answers]
    assert codes.count("OK") == 2
    assert set(codes) == {"OK", "INSUFFICIENT_FUNDS"}
    assert buyer.data(doc.CREDIT_BALANCE)["balances"]["credits"] == 100

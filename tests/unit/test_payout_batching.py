"""The payout run's batching rules (payql/services/payouts.py): which automatic withdrawals a group of accounts
makes (`approvals`), and which answers of a group are completed together (`completions`)."""

from __future__ import annotations

from types import SimpleNamespace

from payql.models import PayoutAccount
from payql.models.enums import ProviderName, WithdrawalStatus
from payql.providers.base import PayoutRefused, ProviderPayout
from payql.services.payouts import _Intent, approvals, completions

MINIMUM = {"USD": 5_000, "JPY": 50}


def account(user: str, currency: str = "USD") -> PayoutAccount:
    return PayoutAccount(
        id=f"pac_{user}_{currency}",
        user_id=user,
        provider=ProviderName.STRIPE,
        external_account_id=f"acct_{user}",
        currency=currency,
    )


def test_each_account_withdraws_its_whole_balance_where_it_reaches_the_minimum() -> None:
    accounts = [account("a"), account("b"), account("c"), account("d", "JPY"), account("e")]
    available = {("a", "USD"): 12_345, ("b", "USD"): 4_999, ("c", "USD"): 5_000, ("d", "JPY"): 50}

    rows = approvals(accounts, available, set(), MINIMUM, "2026-W49")

    assert [(row["user_id"], row["amount_minor"], row["currency"]) for row in rows] == [
        ("a", 12_345, "USD"),
        ("c", 5_000, "USD"),
        ("d", 50, "JPY"),
    ]  # b is under the minimum, e has no balance at all
    for row in rows:
        assert row["status"] is WithdrawalStatus.APPROVED
        assert row["period"] == "2026-W49"
        assert row["payout_account_id"] == f"pac_{row['user_id']}_{row['currency']}"
        assert row["provider_key"] == f"payql-{row['id']}-payout"
    assert len({row["id"] for row in rows}) == 3


def test_a_user_and_currency_already_paid_this_period_or_seen_twice_withdraws_once() -> None:
    accounts = [account("a"), account("b"), account("b")]
    available = {("a", "USD"): 9_000, ("b", "USD"): 9_000}

    rows = approvals(accounts, available, {("a", "USD")}, MINIMUM, "2026-W49")

    assert [row["user_id"] for row in rows] == ["b"]


def test_nothing_is_withdrawn_from_a_negative_or_empty_balance_even_with_no_minimum() -> None:
    rows = approvals([account("a"), account("b")], {("a", "USD"): -10, ("b", "USD"): 0}, set(), {"USD": 0}, "p")

    assert rows == []


def intent(withdrawal_id: str) -> _Intent:
    return _Intent(withdrawal_id, ProviderName.STRIPE, "acct_x", 100, "USD", f"payql-{withdrawal_id}-payout", None)


def payout(status: str, payout_id: str = "tr_1") -> ProviderPayout:
    return ProviderPayout(
        provider_payout_id=payout_id,
        amount_minor=100,
        currency="USD",
        status=status,
        failure_code=None,
        reversed_minor=0,
    )


def row(withdrawal_id: str, status: WithdrawalStatus, payout_id: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        id=withdrawal_id,
        user_id=f"user-{withdrawal_id}",
        status=status,
        amount_minor=100,
        currency="USD",
        provider_payout_id=payout_id,
    )


def test_only_paid_answers_to_withdrawals_still_in_flight_are_completed_together() -> None:
    answered = [
        (intent("w1"), payout("succeeded", "tr_1")),
        (intent("w2"), PayoutRefused("no such destination", provider_code="resource_missing")),
        (intent("w3"), payout("failed", "tr_3")),
        (intent("w4"), payout("succeeded", "tr_4")),  # completed already (a webhook came first)
        (intent("w5"), payout("pending", "tr_5")),
        (intent("w6"), payout("succeeded", "tr_new")),  # a payout id known from before is kept
        (intent("w1"), payout("succeeded", "tr_1")),  # the same withdrawal twice: completed once
    ]
    locked = {
        "w1": row("w1", WithdrawalStatus.PROCESSING),
        "w2": row("w2", WithdrawalStatus.PROCESSING),
        "w3": row("w3", WithdrawalStatus.PROCESSING),
        "w4": row("w4", WithdrawalStatus.COMPLETED, "tr_4"),
        "w5": row("w5", WithdrawalStatus.PROCESSING),
        "w6": row("w6", WithdrawalStatus.PROCESSING, "tr_old"),
    }

    paid, statuses = completions(answered, locked)

    assert [(done.withdrawal_id, done.provider_payout_id) for done in paid] == [("w1", "tr_1"), ("w6", "tr_old")]
    assert paid[0].user_id == "user-w1"
    assert paid[0].cash_owner == "STRIPE"
    assert (paid[0].currency, paid[0].amount_minor) == ("USD", 100)
    assert statuses == [WithdrawalStatus.COMPLETED, None, None, None, None, WithdrawalStatus.COMPLETED, None]


def test_an_answer_whose_withdrawal_was_not_read_is_left_to_the_one_by_one_path() -> None:
    paid, statuses = completions([(intent("gone"), payout("succeeded"))], {})

    assert paid == []
    assert statuses == [None]

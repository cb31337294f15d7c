"""Payouts that fail (#13 item 5): refused at once, transient, reversed or canceled afterwards; YooKassa's payout
gateway credentials. Through GraphQL, signed webhooks and the console script, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import documents as doc
import pytest
from conftest import TEST_SECRET, make_settings
from fakes.stripe_api import FakeStripe
from fakes.yookassa_api import FakeYooKassa
from support import Api, User
from test_payouts import account, earn, usd, verified

from payql.app import create_app
from payql.cli import main
from payql.db import Database

STRIPE_KEY = "sk_test_payout_failures"
WEBHOOK_SECRET = "whsec_payout_failures"
SHOP, SHOP_SECRET = "778", "shop_secret_for_payouts"
WALLET = "wallet:41001234567890"


@pytest.fixture
def stripe_fake() -> Iterator[FakeStripe]:
    with FakeStripe(secret_key=STRIPE_KEY) as server:
        yield server


@pytest.fixture
def yookassa_fake() -> Iterator[FakeYooKassa]:
    with FakeYooKassa(shop_id=SHOP, secret_key=SHOP_SECRET) as server:
        yield server


Configure = Callable[..., Api]


@pytest.fixture
def configure(
    database_url: str,
    db: Database,
    stripe_fake: FakeStripe,
    yookassa_fake: FakeYooKassa,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Configure]:
    """An API over the fakes, and the same configuration in the environment for the console script.
    `payout_credentials`: the YooKassa payout gateway's (agent id, secret key), None for unset."""
    opened: list[Api] = []

    def build(
        payout_credentials: tuple[str, str] | None = (yookassa_fake.agent_id, yookassa_fake.payout_secret_key),
    ) -> Api:
        values: dict[str, Any] = {
            "stripe_secret_key": STRIPE_KEY,
            "stripe_webhook_secret": WEBHOOK_SECRET,
            "stripe_api_base": stripe_fake.url,
            "yookassa_shop_id": SHOP,
            "yookassa_secret_key": SHOP_SECRET,
            "yookassa_api_url": f"{yookassa_fake.url}/v3",
            "yookassa_trusted_ips": "127.0.0.1",
            "provider_timeout_ms": "2000",
        }
        if payout_credentials is not None:
            values["yookassa_payout_agent_id"], values["yookassa_payout_secret_key"] = payout_credentials
        monkeypatch.chdir(tmp_path)  # no stray .env is read by the console script
        environment = {"database_url": database_url, "jwt_secret": TEST_SECRET, "payql_env": "test", **values}
        for name, value in environment.items():
            monkeypatch.setenv(name.upper(), value)
        settings = make_settings(database_url, **{**values, "yookassa_trusted_ips": ["127.0.0.1"]})
        api = Api(create_app(settings, db=db), settings).__enter__()
        opened.append(api)
        return api

    yield build
    for api in opened:
        api.__exit__(None, None, None)


def cli(*args: str) -> str:
    """`payql <args>` as cron runs it (the configuration from the environment); its output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(args)) == 0
    return out.getvalue().strip()


def withdrawal_of(user: User) -> dict[str, Any]:
    (edge,) = user.data(doc.WITHDRAWAL_FAILURES)["withdrawals"]["edges"]
    node: dict[str, Any] = edge["node"]
    return node


def approved(mentor: User, admin: User, amount: dict[str, str]) -> str:
    withdrawal = mentor.ok(doc.REQUEST_WITHDRAWAL, input={"amount": amount})["withdrawal"]
    admin.ok(doc.APPROVE_WITHDRAWAL, id=withdrawal["id"])
    withdrawal_id: str = withdrawal["id"]
    return withdrawal_id


def rub(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "RUB"}


def stripe_hook(api: Api, fake: FakeStripe, event: dict[str, Any]) -> str:
    body, headers = fake.signed_delivery(event, WEBHOOK_SECRET)
    answer = api.request("POST", "/webhooks/stripe", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


def yookassa_hook(api: Api, body: bytes) -> str:
    answer = api.request("POST", "/webhooks/yookassa", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


# ------------------------------------------------------------------------------------------------- Stripe


def test_a_transfer_stripe_refuses_fails_the_withdrawal_and_gives_the_money_back_at_once(
    configure: Configure, stripe_fake: FakeStripe
) -> None:
    api = configure()
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    earn(client, mentor)
    verified(mentor, admin, external="acct_closed")
    stripe_fake.unpayable_accounts.add("acct_closed")  # Stripe answers 400 insufficient_capabilities_for_transfer
    approved(mentor, admin, usd("60.00"))
    assert account(mentor) == {"available": "35.00", "paidOut": "0.00"}

    assert cli("payouts", "run") == "payouts run: 0 created, 0 completed, 1 failed, 0 pending"

    failed = withdrawal_of(mentor)
    assert (failed["status"], failed["failureReason"], failed["reason"]) == (
        "FAILED",
        "insufficient_capabilities_for_transfer",
        None,
    )
    assert account(mentor) == {"available": "95.00", "paidOut": "0.00"}
    assert stripe_fake.transfers == {}
    assert cli("ledger", "check") == "ledger check: ok"
    # nothing is sent again: the withdrawal is over
    sent = len([r for r in stripe_fake.requests if r.path == "/v1/transfers"])
    assert cli("payouts", "run") == "payouts run: 0 created, 0 completed, 0 failed, 0 pending"
    assert len([r for r in stripe_fake.requests if r.path == "/v1/transfers"]) == sent


def test_paid_and_refused_payouts_of_one_group_are_each_settled_in_the_same_run(
    configure: Configure, stripe_fake: FakeStripe
) -> None:
    """One group of answers (the run writes 32 per transaction): the paid ones complete together, the refused one
    fails and gives its money back, and the ledger holds."""
    api = configure()
    client, admin = api.user("client"), api.user("admin", "admin")
    mentors = [api.user(f"mentor{i}", "provider") for i in range(3)]
    for i, mentor in enumerate(mentors):
        earn(client, mentor)
        verified(mentor, admin, external=f"acct_group{i}")
        approved(mentor, admin, usd("60.00"))
    stripe_fake.unpayable_accounts.add("acct_group1")

    assert cli("payouts", "run", "--concurrency", "1") == "payouts run: 0 created, 2 completed, 1 failed, 0 pending"

    assert [withdrawal_of(mentor)["status"] for mentor in mentors] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert [account(mentor) for mentor in mentors] == [
        {"available": "35.00", "paidOut": "60.00"},
        {"available": "95.00", "paidOut": "0.00"},
        {"available": "35.00", "paidOut": "60.00"},
    ]
    assert sorted(transfer["destination"] for transfer in stripe_fake.transfers.values()) == [
        "acct_group0",
        "acct_group2",
    ]
    assert cli("ledger", "check") == "ledger check: ok"


@pytest.mark.parametrize("first_failure", [500, 429])
def test_a_transient_failure_stays_processing_and_the_next_run_sends_the_same_key(
    configure: Configure, stripe_fake: FakeStripe, first_failure: int
) -> None:
    api = configure()
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    earn(client, mentor)
    verified(mentor, admin)
    approved(mentor, admin, usd("60.00"))
    # the first answer is lost after Stripe made the transfer (a 500), or Stripe rate limits the request (a 429)
    stripe_fake.fail_next(
        status=first_failure, path_prefix="/v1/transfers", method="POST", fail_after_processing=first_failure == 500
    )
    stripe_fake.fail_next(status=503, path_prefix="/v1/transfers", method="POST")  # and the next run meets a 503

    assert cli("payouts", "run") == "payouts run: 0 created, 0 completed, 0 failed, 1 pending"
    assert withdrawal_of(mentor)["status"] == "PROCESSING"
    assert cli("payouts", "run") == "payouts run: 0 created, 0 completed, 0 failed, 1 pending"
    assert (withdrawal_of(mentor)["status"], account(mentor)["available"]) == ("PROCESSING", "35.00")

    assert cli("payouts", "run") == "payouts run: 0 created, 1 completed, 0 failed, 0 pending"

    assert len(stripe_fake.transfers) == 1
    keys = {r.idempotency_key for r in stripe_fake.requests if r.method == "POST" and r.path == "/v1/transfers"}
    assert len(keys) == 1
    completed = withdrawal_of(mentor)
    assert (completed["status"], completed["failureReason"]) == ("COMPLETED", None)
    assert account(mentor) == {"available": "35.00", "paidOut": "60.00"}
    assert cli("ledger", "check") == "ledger check: ok"


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (404, "resource_missing", "FAILED"),  # e.g. a deleted connected account
        (403, None, "FAILED"),  # the platform may not pay that account
        (401, None, "FAILED"),  # refused credentials: nothing was paid
        (409, "idempotency_key_in_use", "PROCESSING"),  # the same key still running at Stripe: outcome unknown
        (429, None, "PROCESSING"),
        (502, None, "PROCESSING"),
    ],
)
def test_which_stripe_answers_refuse_a_payout_for_good(
    configure: Configure, stripe_fake: FakeStripe, status: int, code: str | None, outcome: str
) -> None:
    api = configure()
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    earn(client, mentor)
    verified(mentor, admin)
    approved(mentor, admin, usd("60.00"))
    stripe_fake.fail_next(status=status, code=code, path_prefix="/v1/transfers", method="POST")

    cli("payouts", "run")

    found = withdrawal_of(mentor)
    assert found["status"] == outcome
    if outcome == "FAILED":
        assert found["failureReason"] == (code or "the provider refused the payout")  # never Stripe's prose
        assert account(mentor)["available"] == "95.00"
    else:
        assert (found["failureReason"], account(mentor)["available"]) == (None, "35.00")
        assert cli("payouts", "run") == "payouts run: 0 created, 1 completed, 0 failed, 0 pending"  # retried
    assert cli("ledger", "check") == "ledger check: ok"


def test_reconcile_finishes_a_payout_left_processing_with_the_same_key(
    configure: Configure, stripe_fake: FakeStripe
) -> None:
    api = configure()
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    earn(client, mentor)
    verified(mentor, admin)
    approved(mentor, admin, usd("60.00"))
    stripe_fake.fail_next(status=500, path_prefix="/v1/transfers", method="POST", fail_after_processing=True)
    assert cli("payouts", "run") == "payouts run: 0 created, 0 completed, 0 failed, 1 pending"
    assert withdrawal_of(mentor)["status"] == "PROCESSING"

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["reconcile", "--older-than", "0"])

    assert withdrawal_of(mentor)["status"] == "COMPLETED"
    assert len(stripe_fake.transfers) == 1
    keys = {r.idempotency_key for r in stripe_fake.requests if r.method == "POST" and r.path == "/v1/transfers"}
    assert len(keys) == 1
    assert account(mentor) == {"available": "35.00", "paidOut": "60.00"}


def test_a_transfer_reversed_after_completion_fails_the_withdrawal_and_undoes_its_settlement(
    configure: Configure, stripe_fake: FakeStripe
) -> None:
    api = configure()
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    earn(client, mentor)
    verified(mentor, admin)
    approved(mentor, admin, usd("60.00"))
    assert cli("payouts", "run") == "payouts run: 0 created, 1 completed, 0 failed, 0 pending"
    (transfer_id,) = stripe_fake.transfers
    assert account(mentor) == {"available": "35.00", "paidOut": "60.00"}

    # a partial reversal leaves the payout paid
    stripe_fake.reverse_transfer(transfer_id, 1000)
    partial = stripe_fake.events_of("transfer.reversed")[-1]
    assert stripe_hook(api, stripe_fake, partial) == "processed"
    assert withdrawal_of(mentor)["status"] == "COMPLETED"

    # the rest reversed: no money reached the payee, it is available again
    stripe_fake.reverse_transfer(transfer_id)
    whole = stripe_fake.events_of("transfer.reversed")[-1]
    assert stripe_hook(api, stripe_fake, whole) == "processed"

    failed = withdrawal_of(mentor)
    assert (failed["status"], failed["failureReason"]) == ("FAILED", "transfer_reversed")
    assert account(mentor) == {"available": "95.00", "paidOut": "0.00"}
    assert cli("ledger", "check") == "ledger check: ok"

    # the same event again, the older partial one late, and another run: nothing moves
    assert stripe_hook(api, stripe_fake, whole) == "duplicate"
    assert stripe_hook(api, stripe_fake, partial) == "duplicate"
    assert cli("payouts", "run") == "payouts run: 0 created, 0 completed, 0 failed, 0 pending"
    assert withdrawal_of(mentor)["status"] == "FAILED"
    assert account(mentor) == {"available": "95.00", "paidOut": "0.00"}
    assert cli("ledger", "check") == "ledger check: ok"


def test_a_reversal_whose_event_was_lost_is_reported_then_applied_by_reconcile_full(
    configure: Configure, stripe_fake: FakeStripe
) -> None:
    api = configure()
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    earn(client, mentor)
    verified(mentor, admin)
    withdrawal_id = approved(mentor, admin, usd("60.00"))
    assert cli("payouts", "run") == "payouts run: 0 created, 1 completed, 0 failed, 0 pending"
    (transfer_id,) = stripe_fake.transfers
    stripe_fake.reverse_transfer(transfer_id)  # in the Dashboard; its event never arrives

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["reconcile", "--older-than", "0", "--report"]) == 1  # changes nothing, names the difference
    report = out.getvalue()
    assert f"withdrawal {withdrawal_id}: withdrawals {withdrawal_id}: status COMPLETED -> FAILED" in report
    assert withdrawal_of(mentor)["status"] == "COMPLETED"
    assert account(mentor) == {"available": "35.00", "paidOut": "60.00"}

    cli("reconcile", "--older-than", "0", "--full")
    cli("reconcile", "--older-than", "0", "--full")  # a second run moves nothing more
    assert withdrawal_of(mentor)["status"] == "FAILED"
    assert account(mentor) == {"available": "95.00", "paidOut": "0.00"}
    assert "0 difference(s)" in cli("reconcile", "--older-than", "0", "--report")
    assert cli("ledger", "check") == "ledger check: ok"


def test_a_partial_reversal_is_logged_and_left_to_the_operator(
    configure: Configure, stripe_fake: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    # README "Provider truth: what payql leaves to the operator": a part of a transfer reversed is not booked
    api = configure()
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    earn(client, mentor)
    verified(mentor, admin)
    withdrawal_id = approved(mentor, admin, usd("60.00"))
    assert cli("payouts", "run") == "payouts run: 0 created, 1 completed, 0 failed, 0 pending"
    (transfer_id,) = stripe_fake.transfers
    stripe_fake.reverse_transfer(transfer_id, 1000)

    assert stripe_hook(api, stripe_fake, stripe_fake.events_of("transfer.reversed")[-1]) == "processed"
    cli("reconcile", "--older-than", "0", "--full")
    assert withdrawal_of(mentor)["status"] == "COMPLETED"
    assert account(mentor) == {"available": "35.00", "paidOut": "60.00"}  # the 10.00 is not booked
    warned = [r.getMessage() for r in caplog.records if r.name == "payql.payouts" and r.levelname == "WARNING"]
    assert f"withdrawal {withdrawal_id}: the provider reversed 1000 of its 6000 USD; not booked" in warned[-1]
    assert "0 difference(s)" in cli("reconcile", "--older-than", "0", "--report")  # the report does not list it
    assert cli("ledger", "check") == "ledger check: ok"


# ----------------------------------------------------------------------------------------------- YooKassa


def test_a_canceled_yookassa_payout_fails_the_withdrawal_with_its_reason(
    configure: Configure, yookassa_fake: FakeYooKassa
) -> None:
    api = configure()
    client, master, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    earn(client, master, "200.00", "RUB", yookassa_fake)
    verified(master, admin, "YOOKASSA", WALLET, "RUB")
    approved(master, admin, rub("100.00"))
    assert cli("payouts", "run") == "payouts run: 0 created, 0 completed, 0 failed, 1 pending"
    (payout_id,) = yookassa_fake.payouts
    assert account(master, "RUB") == {"available": "69.20", "paidOut": "0.00"}

    yookassa_fake.settle_payout(payout_id, status="canceled", reason="rejected_by_payee")
    assert yookassa_hook(api, yookassa_fake.notification_for("payout.canceled", payout_id)) == "processed"

    failed = withdrawal_of(master)
    assert (failed["status"], failed["failureReason"], failed["reason"]) == ("FAILED", "rejected_by_payee", None)
    assert account(master, "RUB") == {"available": "169.20", "paidOut": "0.00"}
    # the same notification again, and a forged late "succeeded": no regression
    assert yookassa_hook(api, yookassa_fake.notification_for("payout.canceled", payout_id)) == "duplicate"
    forged = yookassa_fake.forged_notification("payout.succeeded", {"id": payout_id})
    assert yookassa_hook(api, forged) == "unconfirmed"
    assert withdrawal_of(master)["status"] == "FAILED"
    assert account(master, "RUB") == {"available": "169.20", "paidOut": "0.00"}
    assert cli("ledger", "check") == "ledger check: ok"


def test_a_yookassa_payout_to_an_invalid_destination_is_refused_at_once(
    configure: Configure, yookassa_fake: FakeYooKassa
) -> None:
    api = configure()
    client, master, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    earn(client, master, "200.00", "RUB", yookassa_fake)
    verified(master, admin, "YOOKASSA", "wallet:12", "RUB")  # not a YooMoney wallet number: a 400 from YooKassa
    approved(master, admin, rub("100.00"))

    assert cli("payouts", "run") == "payouts run: 0 created, 0 completed, 1 failed, 0 pending"

    failed = withdrawal_of(master)
    assert (failed["status"], failed["failureReason"]) == ("FAILED", "invalid_request")
    assert account(master, "RUB")["available"] == "169.20"
    assert yookassa_fake.payouts == {}
    assert cli("ledger", "check") == "ledger check: ok"


def test_yookassa_payouts_go_with_the_payout_gateways_credentials(
    configure: Configure, yookassa_fake: FakeYooKassa
) -> None:
    api = configure()
    client, master, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    earn(client, master, "200.00", "RUB", yookassa_fake)
    verified(master, admin, "YOOKASSA", WALLET, "RUB")
    approved(master, admin, rub("100.00"))

    assert cli("payouts", "run") == "payouts run: 0 created, 0 completed, 0 failed, 1 pending"

    (payout_request,) = [r for r in yookassa_fake.requests if r.path == "/v3/payouts"]
    payment_requests = [r for r in yookassa_fake.requests if r.path.startswith("/v3/payments")]
    agent = ("Authorization", _basic(yookassa_fake.agent_id, yookassa_fake.payout_secret_key))
    shop = ("Authorization", _basic(SHOP, SHOP_SECRET))
    assert agent in _headers(payout_request.headers)
    assert all(shop in _headers(r.headers) for r in payment_requests)
    assert withdrawal_of(master)["status"] == "PROCESSING"


def test_yookassa_payouts_sent_with_the_shops_credentials_are_refused(
    configure: Configure, yookassa_fake: FakeYooKassa
) -> None:
    api = configure(payout_credentials=(SHOP, SHOP_SECRET))  # misconfigured: the shop's pair as the gateway's
    client, master, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    earn(client, master, "200.00", "RUB", yookassa_fake)
    verified(master, admin, "YOOKASSA", WALLET, "RUB")
    approved(master, admin, rub("100.00"))

    assert cli("payouts", "run") == "payouts run: 0 created, 0 completed, 1 failed, 0 pending"

    assert yookassa_fake.payouts == {}
    failed = withdrawal_of(master)
    assert (failed["status"], failed["failureReason"]) == ("FAILED", "invalid_credentials")
    assert account(master, "RUB")["available"] == "169.20"
    assert cli("ledger", "check") == "ledger check: ok"


def test_without_payout_gateway_credentials_yookassa_payouts_run_in_mock_mode(
    configure: Configure, yookassa_fake: FakeYooKassa
) -> None:
    api = configure(payout_credentials=None)
    client, master, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    earn(client, master, "200.00", "RUB", yookassa_fake)
    verified(master, admin, "YOOKASSA", WALLET, "RUB")
    approved(master, admin, rub("100.00"))

    assert cli("payouts", "run") == "payouts run: 0 created, 1 completed, 0 failed, 0 pending"

    assert [r for r in yookassa_fake.requests if r.path.startswith("/v3/payouts")] == []
    assert account(master, "RUB") == {"available": "69.20", "paidOut": "100.00"}


def _basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def _headers(headers: Any) -> set[tuple[str, str]]:
    return {(str(name).title(), str(value)) for name, value in dict(headers).items()}

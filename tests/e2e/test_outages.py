"""Provider outages, for every operation that calls a provider, on both providers (DESIGN.md §6, CONTRACT.md
"Idempotency after a failure").

The matrix is (operation, provider, outage). In each cell the provider's fake answers 500, answers 429, hangs past
`PROVIDER_TIMEOUT_MS`, or processes the request and loses the answer (a 500 or a hang after processing), and:

- the operation comes back within its deadline with PROVIDER_UNAVAILABLE (500, hang) or RATE_LIMITED (429); the
  payout run, a console script, reports the withdrawal as pending and, run as a process while the provider hangs,
  ends right after its summary;
- nothing is half-written: no status moved, no ledger posting, no balance changed (read through the API, and the
  ledger's rows in the database). Only the intent may stay: a PENDING payment or refund that has not been confirmed
  by the provider (it counts against what is left to refund), or a withdrawal PROCESSING (its payout may be sent);
- the same call again (same idempotency key where the mutation takes one) completes, and the provider holds exactly
  one object, charge, capture, cancellation, refund or payout: a lost answer is found again, never made twice.

One app, one database and one pair of fakes serve every cell of a backend (building the app per cell would double
the file's run time); each cell has its own client and payee, and compares what it sees before and after.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE
from typing import Any, ClassVar

import documents as doc
import pytest
from conftest import BACKENDS, TEST_SECRET, make_settings, truncate_postgres
from fakes.stripe_api import FakeStripe
from fakes.yookassa_api import FakeYooKassa
from flows import book
from sqlalchemy import func, select
from support import Api, User

import payql
from payql.app import create_app
from payql.cli import main
from payql.db import Database
from payql.models import CreditLot, LedgerEntry, Payment, Refund, Withdrawal
from payql.services.checks import ledger_problems
from payql.settings import DEFAULT_PACKAGES, PackageConfig

STRIPE_KEY = "sk_test_outages"
SHOP, SHOP_SECRET = "424242", "outage_secret"
TIMEOUT_MS = 400
DEADLINE = TIMEOUT_MS / 1000 + 2  # "did not hang": the call ends at its timeout, not when the provider answers
HANG_SECONDS = 5  # well past the deadline; a request still hung when the fake closes is dropped
PROCESS_STARTUP = 30  # at most, for `payql payouts run` to start and reach the provider
EXIT_GRACE = 2  # a process that printed its summary ends within this (a hung provider call must not keep it)
RETURN_URL = "https://spa.example/back"
RUB_PACKAGE = PackageConfig(code="standard-rub", name="Standard (RUB)", credits=1100, price="1000.00", currency="RUB")
CURRENCY = {"STRIPE": "USD", "YOOKASSA": "RUB"}
PAID = {"AUTOMATIC": "SUCCEEDED", "MANUAL": "AUTHORIZED"}
BALANCES = "balances { credits creditLots { id remaining } accounts { currency available { amount } pending { amount } paidOut { amount } } }"
CLIENT_VIEW = (
    "query($enroll: ID!, $withEnroll: Boolean!) { "
    + BALANCES
    + " payments(first: 20) { totalCount edges { node { "  # a cell's client has a few; with refunds, within the cost
    + doc.PAYMENT_FIELDS
    + " } } } enroll(id: $enroll) @include(if: $withEnroll) { id status payment { id status } } }"
)
PAYEE_VIEW = (
    "{ "
    + BALANCES
    + " withdrawals { totalCount edges { node { id status amount { amount currency } processedAt } } } }"
)

Fake = FakeStripe | FakeYooKassa


# ------------------------------------------------------------------------------------------------ the stage


@dataclass
class Stage:
    """What every cell of one backend shares: the app (both providers real, their SDKs against the fakes)."""

    api: Api
    db: Database
    url: str
    stripe: FakeStripe
    yookassa: FakeYooKassa
    people: Iterator[int]


def _fresh_database(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if backend == "sqlite":
        target = tmp_path_factory.mktemp("outages") / "payql.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_migrated")
    truncate_postgres(url)
    return url


def _provider_settings(stripe: FakeStripe, yookassa: FakeYooKassa) -> dict[str, str]:
    return {
        "stripe_secret_key": STRIPE_KEY,
        "stripe_api_base": stripe.url,
        "yookassa_shop_id": SHOP,
        "yookassa_secret_key": SHOP_SECRET,
        "yookassa_api_url": f"{yookassa.url}/v3",
        "yookassa_payout_agent_id": yookassa.agent_id,
        "yookassa_payout_secret_key": yookassa.payout_secret_key,
        "provider_timeout_ms": str(TIMEOUT_MS),
    }


@pytest.fixture(scope="module", params=BACKENDS)
def stage(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    url = _fresh_database(request.param, request, tmp_path_factory)
    with FakeStripe(secret_key=STRIPE_KEY) as stripe, FakeYooKassa(shop_id=SHOP, secret_key=SHOP_SECRET) as yookassa:
        yookassa.payouts_succeed_immediately = True
        settings = make_settings(
            url,
            **_provider_settings(stripe, yookassa),
            credit_packages=[*DEFAULT_PACKAGES, RUB_PACKAGE],
            rate_limit="100000/minute",  # one admin reads the books of every cell
        )
        with Api(create_app(settings, db=Database(url)), settings) as api:
            yield Stage(api, api.app.state.services.db, url, stripe, yookassa, itertools.count(1))


@dataclass
class World:
    """One cell's view of the stage: its own client and payee (a provider user), and the admin."""

    stage: Stage
    client: User
    payee: User
    admin: User

    @property
    def stripe(self) -> FakeStripe:
        return self.stage.stripe

    @property
    def yookassa(self) -> FakeYooKassa:
        return self.stage.yookassa

    def fake(self, provider: str) -> Fake:
        return self.stripe if provider == "STRIPE" else self.yookassa

    def count(self, model: type, *where: Any) -> int:
        with self.stage.db.read() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def state(self, scene: Scene) -> dict[str, Any]:
        """All the API shows that an outage must not change (balances, the client's payments, the enroll, the
        payee's withdrawals, the platform's books), and the ledger's rows. Refunds still PENDING (asked for, outcome
        unknown) are left out of the payments."""
        client = self.client.data(CLIENT_VIEW, enroll=scene.enroll_id, withEnroll=bool(scene.enroll_id))
        for edge in client["payments"]["edges"]:
            edge["node"]["refunds"] = [r for r in edge["node"]["refunds"] if r["status"] != "PENDING"]
        return {
            "client": client,
            "payee": self.payee.data(PAYEE_VIEW),
            "platform": self.admin.data(doc.PLATFORM_BALANCES)["platformBalances"],
            "ledger entries": self.count(LedgerEntry),
            "credit lots": self.count(CreditLot),
            "refunds settled": self.count(Refund, Refund.status != "PENDING"),
            "payments at a provider": self.count(Payment, Payment.provider_payment_id.is_not(None)),
        }

    def payment(self, payment_id: str) -> dict[str, Any]:
        payment: dict[str, Any] = self.client.data(doc.PAYMENT, id=payment_id)["payment"]
        return payment

    def reference(self, provider: str, payment_id: str) -> str:
        """The provider's id of our payment (a PaymentIntent, a Checkout Session or a YooKassa payment)."""
        if provider == "YOOKASSA":
            found = [pid for pid, p in self.yookassa.payments.items() if p["metadata"]["payment_id"] == payment_id]
        else:
            found = [pid for pid, p in self.stripe.payment_intents.items() if p["metadata"]["payment_id"] == payment_id]
            found += [sid for sid, s in self.stripe.checkout_sessions.items() if s["client_reference_id"] == payment_id]
        (reference,) = found
        return reference

    def refunds(self, provider: str, reference: str) -> list[dict[str, Any]]:
        """The provider's refunds of the payment `reference`."""
        if provider == "YOOKASSA":
            return [r for r in self.yookassa.refunds.values() if r["payment_id"] == reference]
        return [r for r in self.stripe.refunds.values() if r["payment_intent"] == reference]

    def events(self, provider: str, event_type: str, reference: str) -> int:
        """How many times the provider did `event_type` to `reference` (a replayed answer emits nothing)."""
        if provider == "YOOKASSA":
            return sum(1 for event, obj in self.yookassa.events if event == event_type and obj["id"] == reference)
        objects = (event["data"]["object"] for event in self.stripe.events_of(event_type))
        return sum(1 for obj in objects if reference in {obj["id"], obj.get("payment_intent")})

    def keys(self, provider: str, since: int, method: str, path: str) -> list[str | None]:
        """The idempotency keys of the requests to `path` since the `since`-th (failed, hung and retried alike)."""
        if provider == "YOOKASSA":
            sent = self.yookassa.requests[since:]
            return [r.idempotence_key for r in sent if r.method == method and r.path == "/v3" + path]
        return [r.idempotency_key for r in self.stripe.requests[since:] if r.method == method and r.path == path]


@pytest.fixture
def world(stage: Stage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
    # `payql payouts run` builds its own app from the environment: the same database and fakes
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    environment = {"database_url": stage.url, "jwt_secret": TEST_SECRET, "payql_env": "test"}
    for name, value in {**environment, **_provider_settings(stage.stripe, stage.yookassa)}.items():
        monkeypatch.setenv(name.upper(), value)
    for fake in (stage.stripe, stage.yookassa):
        fake.clear_failures()  # an injection a failed cell did not use
    n = next(stage.people)
    api = stage.api
    yield World(stage, api.user(f"client-{n}"), api.user(f"payee-{n}", "provider"), api.user("admin", "admin"))
    with stage.db.read() as session:
        problems = ledger_problems(session)
    assert problems == [], "ledger check failed:\n" + "\n".join(problems)
    assert stage.stripe.server_errors == []
    assert stage.yookassa.server_errors == []


# ------------------------------------------------------------------------------------------------ outages


@dataclass(frozen=True)
class Outage:
    name: str
    code: str
    status: int | None = None  # the error the provider answers; None: it hangs
    lost: bool = False  # the provider processed the request, and its answer never arrives

    def inject(self, fake: Fake, method: str, path: str) -> None:
        if self.status is None:
            fake.hang_next(count=1, seconds=HANG_SECONDS, path_prefix=path, method=method, after_processing=self.lost)
        else:
            fake.fail_next(
                count=1, status=self.status, path_prefix=path, method=method, fail_after_processing=self.lost
            )


OUTAGES = [
    Outage("500", "PROVIDER_UNAVAILABLE", status=500),
    Outage("429", "RATE_LIMITED", status=429),
    Outage("hang", "PROVIDER_UNAVAILABLE"),
    Outage("500-after-processing", "PROVIDER_UNAVAILABLE", status=500, lost=True),
    Outage("hang-after-processing", "PROVIDER_UNAVAILABLE", lost=True),
]


def injected(fake: Fake) -> int:
    """Injected failures not yet used by a request."""
    with fake._lock:
        return len(fake._rules)


# ---------------------------------------------------------------------------------------------- operations


@dataclass
class Scene:
    provider: str
    enroll_id: str = ""
    payment_id: str = ""
    reference: str = ""  # the provider's id of the payment
    withdrawal_id: str = ""
    payload: Any = None  # the operation's last answer
    outage: Outage | None = None
    elapsed: float | None = None  # how long the call took, when the operation measures it itself


class Operation:
    """One call to a provider, driven through the public API. Subclasses say how to get there, which request to
    break, how to make the call, and what the provider made; `done` asserts what a successful call shows."""

    name: ClassVar[str]

    def writes(self, provider: str) -> bool:
        """Whether the call changes something at the provider (so that its answer can be lost after the work)."""
        return True

    def stable_key(self, provider: str) -> bool:
        """Whether every attempt must send the provider the same idempotency key."""
        return True

    def arrange(self, world: World, scene: Scene) -> None:
        raise NotImplementedError

    def target(self, scene: Scene) -> tuple[str, str]:
        """The request to break: (method, path)."""
        raise NotImplementedError

    def act(self, world: World, scene: Scene) -> list[str]:
        """Make the call once; the error codes it answered ([] on success)."""
        raise NotImplementedError

    def made(self, world: World, scene: Scene) -> int:
        """How many of the objects (or operations) this call makes the provider has for this scene."""
        raise NotImplementedError

    def done(self, world: World, scene: Scene) -> None:
        raise NotImplementedError

    def facts(self, state: dict[str, Any]) -> dict[str, Any]:
        """What of `World.state` the failed call must leave exactly as it was."""
        return state

    def failed(self, world: World, scene: Scene, answer: list[str], outage: Outage) -> None:
        assert answer == [outage.code], scene.payload
        touched = {name: value for name, value in scene.payload.items() if name != "errors" and value is not None}
        assert touched == {}  # nothing but the error comes back


class Mutation(Operation):
    document: ClassVar[str]

    def caller(self, world: World) -> User:
        return world.client

    def variables(self, scene: Scene) -> dict[str, Any]:
        raise NotImplementedError

    def act(self, world: World, scene: Scene) -> list[str]:
        (scene.payload,) = self.caller(world).data(self.document, **self.variables(scene)).values()
        return [error["code"] for error in scene.payload["errors"]]


def booked(world: World, scene: Scene) -> None:
    scene.enroll_id = book(world.client, world.payee, "100.00", CURRENCY[scene.provider])


def started(world: World, scene: Scene, capture: str) -> None:
    """A booked enroll with a payment created at the provider, not paid yet."""
    booked(world, scene)
    ask = {"enrollId": scene.enroll_id, "provider": scene.provider, "captureMethod": capture, "returnUrl": RETURN_URL}
    scene.payment_id = world.client.ok(doc.CREATE_INTENT, input=ask)["payment"]["id"]
    scene.reference = world.reference(scene.provider, scene.payment_id)


def paid(world: World, scene: Scene, capture: str) -> None:
    """The client paid at the provider (held for MANUAL, captured for AUTOMATIC), and we know it."""
    started(world, scene, capture)
    if scene.provider == "STRIPE":
        world.stripe.customer_pays(scene.reference, "pm_card_visa")
    else:
        world.yookassa.customer_pays(scene.reference)
    assert world.client.ok(doc.CONFIRM, paymentId=scene.payment_id)["payment"]["status"] == PAID[capture]


def ready(world: World, scene: Scene) -> None:
    world.payee.ok(doc.ACCEPT_ENROLL, id=scene.enroll_id)
    world.payee.ok(doc.MARK_ENROLL_READY, id=scene.enroll_id)


def without_pending_payments(state: dict[str, Any]) -> dict[str, Any]:
    """The state less the client's PENDING payments and the enroll's link to one: the intent a failed
    createIntent may leave (it never reached the provider, or the provider's answer was lost)."""
    client = state["client"]
    payments = [edge["node"] for edge in client["payments"]["edges"] if edge["node"]["status"] != "PENDING"]
    enroll = client.get("enroll") and client["enroll"]["status"]
    return {**state, "client": {"balances": client["balances"], "payments": payments, "enroll": enroll}}


class CreateIntentForEnroll(Mutation):
    name = "createIntent-enroll"
    document = doc.CREATE_INTENT

    def arrange(self, world: World, scene: Scene) -> None:
        booked(world, scene)

    def target(self, scene: Scene) -> tuple[str, str]:
        return ("POST", "/v1/payment_intents") if scene.provider == "STRIPE" else ("POST", "/payments")

    def variables(self, scene: Scene) -> dict[str, Any]:
        ask = {"enrollId": scene.enroll_id, "provider": scene.provider, "captureMethod": "MANUAL"}
        return {"input": {**ask, "returnUrl": RETURN_URL, "idempotencyKey": "outage-pay-1"}}

    def facts(self, state: dict[str, Any]) -> dict[str, Any]:
        return without_pending_payments(state)

    def made(self, world: World, scene: Scene) -> int:
        if scene.provider == "STRIPE":
            return sum(1 for p in world.stripe.payment_intents.values() if scene.enroll_id in p["description"])
        return sum(1 for p in world.yookassa.payments.values() if scene.enroll_id in p["description"])

    def done(self, world: World, scene: Scene) -> None:
        payment = scene.payload["payment"]
        price = {"amount": "100.00", "currency": CURRENCY[scene.provider]}
        assert (payment["status"], payment["amount"], payment["enroll"]["id"]) == ("PENDING", price, scene.enroll_id)
        self.reached(world, scene)

    def reached(self, world: World, scene: Scene) -> None:
        """The answer points at the provider's one object for this payment, and no other payment row was made."""
        reference = world.reference(scene.provider, scene.payload["payment"]["id"])
        if scene.provider == "YOOKASSA":
            assert scene.payload["confirmationUrl"] == f"{world.yookassa.url}/checkout/{reference}"
        elif reference.startswith("cs_"):
            assert scene.payload["checkoutUrl"] == world.stripe.checkout_sessions[reference]["url"]
        else:
            assert scene.payload["clientSecret"].startswith(f"{reference}_secret_")
        assert world.count(Payment, Payment.payer_id == world.client.id) == 1  # the failed attempt's row, resumed


class CreateIntentForPackage(CreateIntentForEnroll):
    name = "createIntent-package"

    def arrange(self, world: World, scene: Scene) -> None:
        pass

    def target(self, scene: Scene) -> tuple[str, str]:
        return ("POST", "/v1/checkout/sessions") if scene.provider == "STRIPE" else ("POST", "/payments")

    def variables(self, scene: Scene) -> dict[str, Any]:
        code = "standard" if scene.provider == "STRIPE" else RUB_PACKAGE.code
        ask = {"packageCode": code, "provider": scene.provider, "returnUrl": RETURN_URL}
        return {"input": {**ask, "idempotencyKey": "outage-package-1"}}

    def made(self, world: World, scene: Scene) -> int:
        """Checkout Sessions (Stripe) or payments (YooKassa) that are this client's."""
        with world.stage.db.read() as session:
            ours = set(session.scalars(select(Payment.id).where(Payment.payer_id == world.client.id)))
        if scene.provider == "STRIPE":
            return sum(1 for s in world.stripe.checkout_sessions.values() if s["client_reference_id"] in ours)
        return sum(1 for p in world.yookassa.payments.values() if p["metadata"]["payment_id"] in ours)

    def done(self, world: World, scene: Scene) -> None:
        payment = scene.payload["payment"]
        stripe = scene.provider == "STRIPE"
        price = {"amount": "100.00", "currency": "CNY"} if stripe else {"amount": "1000.00", "currency": "RUB"}
        assert (payment["status"], payment["purpose"], payment["amount"]) == ("PENDING", "PACKAGE", price)
        self.reached(world, scene)
        assert world.client.data(doc.CREDIT_BALANCE)["balances"]["credits"] == 0  # granted once paid, not before


class Confirm(Mutation):
    """Stripe: a server-side confirmation with a payment method (it charges the card). YooKassa: the client paid
    on YooKassa's page, and `confirm` re-reads the payment (a GET: there is nothing it could do twice)."""

    name = "confirm"
    document = doc.CONFIRM

    def writes(self, provider: str) -> bool:
        return provider == "STRIPE"

    def stable_key(self, provider: str) -> bool:
        return False  # no idempotencyKey in the input: what counts is one charge

    def arrange(self, world: World, scene: Scene) -> None:
        started(world, scene, "AUTOMATIC")
        if scene.provider == "YOOKASSA":
            world.yookassa.customer_pays(scene.reference)

    def target(self, scene: Scene) -> tuple[str, str]:
        if scene.provider == "STRIPE":
            return "POST", f"/v1/payment_intents/{scene.reference}/confirm"
        return "GET", f"/payments/{scene.reference}"

    def variables(self, scene: Scene) -> dict[str, Any]:
        method = "pm_card_visa" if scene.provider == "STRIPE" else None
        return {"paymentId": scene.payment_id, "paymentMethod": method}

    def made(self, world: World, scene: Scene) -> int:
        if scene.provider == "STRIPE":
            return sum(1 for charge in world.stripe.charges.values() if charge["payment_intent"] == scene.reference)
        return world.events(scene.provider, "payment.succeeded", scene.reference)  # the customer's payment

    def done(self, world: World, scene: Scene) -> None:
        payment = scene.payload["payment"]
        assert (payment["status"], payment["capturedAmount"]["amount"]) == ("SUCCEEDED", "100.00")
        assert world.payment(scene.payment_id)["status"] == "SUCCEEDED"
        if scene.provider == "STRIPE":
            assert world.stripe.payment_intents[scene.reference]["status"] == "succeeded"
        else:
            assert world.yookassa.payments[scene.reference]["status"] == "succeeded"


class RefundPayment(Mutation):
    name = "refund"
    document = doc.REFUND

    def caller(self, world: World) -> User:
        return world.payee

    def arrange(self, world: World, scene: Scene) -> None:
        paid(world, scene, "AUTOMATIC")

    def target(self, scene: Scene) -> tuple[str, str]:
        return ("POST", "/v1/refunds") if scene.provider == "STRIPE" else ("POST", "/refunds")

    def variables(self, scene: Scene) -> dict[str, Any]:
        amount = {"amount": "40.00", "currency": CURRENCY[scene.provider]}
        return {"input": {"paymentId": scene.payment_id, "amount": amount, "idempotencyKey": "outage-refund-1"}}

    def made(self, world: World, scene: Scene) -> int:
        return len(world.refunds(scene.provider, scene.reference))

    def done(self, world: World, scene: Scene) -> None:
        refund, payment = scene.payload["refund"], scene.payload["payment"]
        assert (refund["status"], refund["amount"]["amount"]) == ("SUCCEEDED", "40.00")
        assert (payment["status"], payment["refundedAmount"]["amount"]) == ("PARTIALLY_REFUNDED", "40.00")
        assert world.count(Refund, Refund.payment_id == scene.payment_id) == 1
        (at_provider,) = world.refunds(scene.provider, scene.reference)
        assert at_provider["amount"] == (4000 if scene.provider == "STRIPE" else {"value": "40.00", "currency": "RUB"})


class ConfirmEnroll(Mutation):
    """The client confirms the enroll: its MANUAL hold is captured and split."""

    name = "confirmEnroll"
    document = doc.CONFIRM_ENROLL

    def arrange(self, world: World, scene: Scene) -> None:
        paid(world, scene, "MANUAL")
        ready(world, scene)

    def target(self, scene: Scene) -> tuple[str, str]:
        if scene.provider == "STRIPE":
            return "POST", f"/v1/payment_intents/{scene.reference}/capture"
        return "POST", f"/payments/{scene.reference}/capture"

    def variables(self, scene: Scene) -> dict[str, Any]:
        return {"id": scene.enroll_id}

    def made(self, world: World, scene: Scene) -> int:
        event = "charge.captured" if scene.provider == "STRIPE" else "payment.succeeded"
        return world.events(scene.provider, event, scene.reference)

    def done(self, world: World, scene: Scene) -> None:
        payment = scene.payload["payment"]
        assert scene.payload["enroll"]["status"] == "COMPLETED"
        assert (payment["status"], payment["capturedAmount"]["amount"]) == ("SUCCEEDED", "100.00")
        available = {"STRIPE": "95.00", "YOOKASSA": "84.60"}[scene.provider]
        (account,) = world.payee.data(doc.BALANCES)["balances"]["accounts"]
        assert (account["available"]["amount"], account["pending"]["amount"]) == (available, "0.00")


class CancelHeldEnroll(ConfirmEnroll):
    """Cancelling an enroll whose payment is held: the hold is voided."""

    name = "cancelEnroll-void"
    document = doc.CANCEL_ENROLL

    def arrange(self, world: World, scene: Scene) -> None:
        paid(world, scene, "MANUAL")

    def target(self, scene: Scene) -> tuple[str, str]:
        if scene.provider == "STRIPE":
            return "POST", f"/v1/payment_intents/{scene.reference}/cancel"
        return "POST", f"/payments/{scene.reference}/cancel"

    def made(self, world: World, scene: Scene) -> int:
        event = "payment_intent.canceled" if scene.provider == "STRIPE" else "payment.canceled"
        return world.events(scene.provider, event, scene.reference)

    def done(self, world: World, scene: Scene) -> None:
        assert (scene.payload["enroll"]["status"], scene.payload["payment"]["status"]) == ("CANCELLED", "CANCELED")
        if scene.provider == "STRIPE":
            assert world.stripe.payment_intents[scene.reference]["status"] == "canceled"
        else:
            assert world.yookassa.payments[scene.reference]["status"] == "canceled"
        accounts = world.payee.data(doc.BALANCES)["balances"]["accounts"]
        assert [a["pending"]["amount"] for a in accounts if a["pending"]["amount"] != "0.00"] == []


class CancelCapturedEnroll(ConfirmEnroll):
    """Cancelling an enroll whose payment was captured (AUTOMATIC: in escrow): it is refunded in full."""

    name = "cancelEnroll-refund"
    document = doc.CANCEL_ENROLL

    def arrange(self, world: World, scene: Scene) -> None:
        paid(world, scene, "AUTOMATIC")

    def target(self, scene: Scene) -> tuple[str, str]:
        return ("POST", "/v1/refunds") if scene.provider == "STRIPE" else ("POST", "/refunds")

    def made(self, world: World, scene: Scene) -> int:
        return len(world.refunds(scene.provider, scene.reference))

    def done(self, world: World, scene: Scene) -> None:
        payment = scene.payload["payment"]
        assert (scene.payload["enroll"]["status"], payment["status"]) == ("CANCELLED", "REFUNDED")
        assert payment["refundedAmount"]["amount"] == "100.00"
        assert world.count(Refund, Refund.payment_id == scene.payment_id) == 1


class PayoutRun(Operation):
    """`payql payouts run` sends an approved withdrawal: a Stripe Connect transfer or a YooKassa payout."""

    name = "payouts-run"
    sent = "payouts run: 0 created, 1 completed, 0 failed, 0 pending"
    unsent = "payouts run: 0 created, 0 completed, 0 failed, 1 pending"

    @staticmethod
    def destination(world: World, scene: Scene) -> str:
        if scene.provider == "STRIPE":
            return f"acct_{world.payee.id.replace('-', '_')}"
        return f"wallet:4100{world.payee.id.removeprefix('payee-'):0>9}"

    def arrange(self, world: World, scene: Scene) -> None:
        if world.count(Withdrawal, Withdrawal.status.in_(["APPROVED", "PROCESSING"])):
            self.run_here()  # a failed cell's withdrawal: the run pays every one that is due, so pay it first
        paid(world, scene, "AUTOMATIC")
        ready(world, scene)
        world.client.ok(doc.CONFIRM_ENROLL, id=scene.enroll_id)
        currency = CURRENCY[scene.provider]
        account = {
            "provider": scene.provider,
            "externalAccountId": self.destination(world, scene),
            "currency": currency,
        }
        registered = world.payee.ok(doc.REGISTER_PAYOUT_ACCOUNT, input=account)
        world.admin.ok(doc.VERIFY_PAYOUT_ACCOUNT, id=registered["payoutAccount"]["id"])
        amount = {"amount": "60.00", "currency": currency}
        requested = world.payee.ok(doc.REQUEST_WITHDRAWAL, input={"amount": amount, "idempotencyKey": "outage-wd-1"})
        scene.withdrawal_id = requested["withdrawal"]["id"]
        assert world.admin.ok(doc.APPROVE_WITHDRAWAL, id=scene.withdrawal_id)["withdrawal"]["status"] == "APPROVED"

    def target(self, scene: Scene) -> tuple[str, str]:
        return ("POST", "/v1/transfers") if scene.provider == "STRIPE" else ("POST", "/payouts")

    def act(self, world: World, scene: Scene) -> list[str]:
        """The console script as cron runs it; its answer is its summary line and the warnings it logged. While
        the provider hangs, it runs as its own process: that process must end too (a cron job that never exits
        is a hang as well)."""
        first = scene.payload is None
        if first and scene.outage is not None and scene.outage.name == "hang":
            scene.payload = self.run_process(world, scene)
        else:
            scene.payload = self.run_here()
        return [] if scene.payload == [self.sent] else scene.payload

    def run_here(self) -> list[str]:
        warnings = _Collector()
        logger = logging.getLogger("payql.payouts")
        logger.addHandler(warnings)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                assert main(["payouts", "run"]) == 0
        finally:
            logger.removeHandler(warnings)
        return [out.getvalue().strip(), *warnings.lines]

    def run_process(self, world: World, scene: Scene) -> list[str]:
        """`payql payouts run` in a process of its own (the environment is the world's). `scene.elapsed` is the time
        from the provider receiving the payout request to the summary line; the process must end right after."""
        method, path = self.target(scene)
        sent = len(world.fake(scene.provider).requests)
        source = str(Path(payql.__file__).parent.parent)  # the payql this test imported, wherever it lives
        environment = {**os.environ, "PYTHONPATH": source, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "payql.cli", "payouts", "run"]
        with subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True, env=environment) as process:  # noqa: S603
            give_up = time.monotonic() + PROCESS_STARTUP
            while process.poll() is None and not world.keys(scene.provider, sent, method, path):
                assert time.monotonic() < give_up, "the payout run never reached the provider"
                time.sleep(0.01)
            asked = time.monotonic()
            summary = (process.stdout.readline() if process.stdout else "").strip()
            scene.elapsed = time.monotonic() - asked
            try:
                process.wait(timeout=EXIT_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
            errors = process.stderr.read() if process.stderr else ""
        assert process.returncode == 0, f"the payout run did not end {EXIT_GRACE} s after its summary: {errors}"
        return [summary, *errors.splitlines()]

    def failed(self, world: World, scene: Scene, answer: list[str], outage: Outage) -> None:
        summary, warning = answer
        assert summary == self.unsent
        assert warning.startswith(f"payout of {scene.withdrawal_id} not sent: ")
        assert ("rate limiting" in warning) == (outage.code == "RATE_LIMITED"), warning
        # the intent: the payout may have gone out, and the next run sends the same key
        assert self.withdrawal(world)["status"] == "PROCESSING"

    @staticmethod
    def withdrawal(world: World) -> dict[str, Any]:
        (edge,) = world.payee.data(PAYEE_VIEW)["withdrawals"]["edges"]
        node: dict[str, Any] = edge["node"]
        return node

    def facts(self, state: dict[str, Any]) -> dict[str, Any]:
        """The withdrawal may only go from APPROVED to PROCESSING (checked in `failed`)."""
        payee = state["payee"]
        withdrawals = [{**edge["node"], "status": None} for edge in payee["withdrawals"]["edges"]]
        return {**state, "payee": {**payee, "withdrawals": withdrawals}}

    def made(self, world: World, scene: Scene) -> int:
        destination = self.destination(world, scene)
        if scene.provider == "STRIPE":
            return sum(1 for t in world.stripe.transfers.values() if t["destination"] == destination)
        number = destination.removeprefix("wallet:")
        return sum(
            1 for p in world.yookassa.payouts.values() if p["payout_destination"].get("account_number") == number
        )

    def done(self, world: World, scene: Scene) -> None:
        withdrawal = self.withdrawal(world)
        assert (withdrawal["status"], withdrawal["amount"]["amount"]) == ("COMPLETED", "60.00")
        assert withdrawal["processedAt"] is not None
        (account,) = world.payee.data(doc.BALANCES)["balances"]["accounts"]
        assert (account["available"]["amount"], account["paidOut"]["amount"]) == (
            {"STRIPE": "35.00", "YOOKASSA": "24.60"}[scene.provider],
            "60.00",
        )
        assert world.count(Withdrawal, Withdrawal.user_id == world.payee.id) == 1


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


OPERATIONS: list[Operation] = [
    CreateIntentForEnroll(),
    CreateIntentForPackage(),
    Confirm(),
    RefundPayment(),
    ConfirmEnroll(),
    CancelHeldEnroll(),
    CancelCapturedEnroll(),
    PayoutRun(),
]
MATRIX = [
    pytest.param(operation, provider, outage, id=f"{operation.name}-{provider.lower()}-{outage.name}")
    for operation in OPERATIONS
    for provider in ("STRIPE", "YOOKASSA")
    for outage in OUTAGES
    if operation.writes(provider) or not outage.lost  # a lost answer to a read is just an outage
]


@pytest.mark.parametrize(("operation", "provider", "outage"), MATRIX)
def test_an_outage_fails_in_time_leaves_nothing_half_written_and_a_retry_does_it_once(
    world: World, operation: Operation, provider: str, outage: Outage
) -> None:
    scene = Scene(provider, outage=outage)
    operation.arrange(world, scene)
    fake = world.fake(provider)
    before, made, sent = operation.facts(world.state(scene)), operation.made(world, scene), len(fake.requests)
    method, path = operation.target(scene)

    outage.inject(fake, method, path)
    started = time.monotonic()
    answer = operation.act(world, scene)
    elapsed = time.monotonic() - started if scene.elapsed is None else scene.elapsed

    assert injected(fake) == 0  # the outage hit this very call
    assert elapsed < DEADLINE, f"{operation.name} took {elapsed:.1f} s"
    operation.failed(world, scene, answer, outage)
    assert operation.facts(world.state(scene)) == before
    did = 1 if operation.writes(provider) else 0
    assert operation.made(world, scene) == made + (did if outage.lost else 0)  # a lost answer: the provider did it

    assert operation.act(world, scene) == [], scene.payload
    operation.done(world, scene)
    assert operation.made(world, scene) == made + did
    if operation.stable_key(provider):
        keys = world.keys(provider, sent, method, path)
        assert len(keys) == 2  # the failed attempt and the retry
        assert len(set(keys)) == 1  # with the same key
        assert None not in keys

"""The access matrix: every query and mutation of the schema, called by every kind of caller.

Callers: `anonymous` (no token), `stranger` (signed in, no roles, no relation to anything), `rival` (another
provider, no relation), `client` (the payer), `provider` (the payee) and `admin`. `EXPECTED` says what each of them
gets from each field: allowed (and then what must come back: for a list, exactly the caller's own rows), or a
refusal code (CONTRACT.md).

A refused mutation changes nothing in the database (every table, row for row). An object-scoped refusal says
nothing about the object: another user's existing object gets exactly the answer a random id gets (same code,
message, field and data), CONTRACT.md "Who can see what". Allowed mutations act on fresh objects; refusals share
one object per kind, rebuilt if a refusal (wrongly) changed it.

The world (app, database, users, objects) is built once per backend for the whole module, as building it per row
would cost seconds per row. A completeness guard fails when a Query or Mutation field of the schema has no row.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import documents as doc
import graphql
import pytest
from conftest import BACKENDS, make_settings, truncate_postgres
from flows import intent, paid_enroll, paid_package
from sqlalchemy import or_, select
from support import Api, User, error_codes

from payql.app import create_app
from payql.db import Database
from payql.models import (
    Base,
    CreditLot,
    CreditTransaction,
    Dispute,
    Enroll,
    Payment,
    PayoutAccount,
    Withdrawal,
    new_id,
    utcnow,
)
from payql.models.enums import DisputeStatus, ProviderName
from payql.money import Money
from payql.providers.base import ProviderDispute
from payql.schema import build_schema
from payql.services.checks import ledger_problems
from payql.services.payouts import available

SDL = Path(__file__).resolve().parents[2] / "schema.graphql"
ROLES = ("anonymous", "stranger", "rival", "client", "provider", "admin")
SIGNED_IN = {"stranger": (), "rival": ("provider",), "client": (), "provider": ("provider",), "admin": ("admin",)}
BYSTANDER = "bystander"  # a recorded user without the provider role: nobody can book them

# Documents tests/documents.py lacks, or has without what these checks read (the error's field, a page of 100).
VERIFY_PAYOUT_ACCOUNT = (
    "mutation($id: ID!) { verifyPayoutAccount(id: $id) { payoutAccount { id status } errors { code field message } } }"
)
REJECT_PAYOUT_ACCOUNT = (
    "mutation($id: ID!) { rejectPayoutAccount(id: $id) { payoutAccount { id status } errors { code field message } } }"
)
PAYOUT_ACCOUNTS = "{ payoutAccounts { id provider status currency externalAccountId } }"
PAYMENTS = """
query($first: Int!) {
  payments(first: $first) { totalCount pageInfo { hasNextPage } edges { node { id status payerId payeeId } } }
}
"""
DISPUTES = """
query($first: Int!) {
  disputes(first: $first) { totalCount pageInfo { hasNextPage } edges { node { id paymentId status } } }
}
"""
WITHDRAWALS = """
query($first: Int!) {
  withdrawals(first: $first) { totalCount pageInfo { hasNextPage } edges { node { id providerId status amount { amount } } } }
}
"""

# The kind of each object a row acts on, and the prefix of its ids (a random id of that shape is "missing").
ID_PREFIX = {
    "enroll": "enr",
    "confirmed_enroll": "enr",
    "held_enroll": "enr",
    "ready_enroll": "enr",
    "pending_payment": "pay",
    "enroll_payment": "pay",
    "package_payment": "pay",
    "payout_account": "pac",
    "withdrawal": "wdr",
    "bystander": "usr",
}


EVERY_ROW = {table.name: select(table).order_by(*table.primary_key) for table in Base.metadata.sorted_tables}


def _usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


class World:
    """One backend's app and the objects the rows act on, built on first use."""

    def __init__(self, api: Api, db: Database) -> None:
        self.api = api
        self.db = db
        self.users: dict[str, User] = {role: api.user(role, *roles) for role, roles in SIGNED_IN.items()}
        self.users["anonymous"] = api.anonymous()
        self.bystander = api.user(BYSTANDER)
        for user in [*self.users.values(), self.bystander]:
            if user.token:  # recorded now, so that no later call adds a `users` row
                user.data("{ payments { totalCount } }")
        self._shared: dict[str, str] = {}
        self._serial = itertools.count(1)

    @property
    def client(self) -> User:
        return self.users["client"]

    @property
    def provider(self) -> User:
        return self.users["provider"]

    @property
    def admin(self) -> User:
        return self.users["admin"]

    def serial(self) -> int:
        return next(self._serial)

    # -- objects -------------------------------------------------------------------------------------------

    def shared(self, kind: str) -> str:
        """The object of `kind` that refused calls share (refusals leave it as it is)."""
        if kind not in self._shared:
            self._shared[kind] = BUILDERS[kind](self)
        return self._shared[kind]

    def fresh(self, kind: str) -> str:
        """A new object of `kind`, for a call that is allowed to change it."""
        return BUILDERS[kind](self)

    def spoil(self, kind: str) -> None:
        """A refused call changed the shared object (a bug the row reports): the next row gets a new one."""
        self._shared.pop(kind, None)

    @staticmethod
    def missing(kind: str) -> str:
        return new_id(ID_PREFIX[kind])

    def book(self) -> str:
        payload = self.client.ok(
            doc.CREATE_ENROLL, providerId=self.provider.id, title="Lesson", amount="100.00", currency="USD"
        )
        enroll_id: str = payload["enroll"]["id"]
        return enroll_id

    def confirmed_enroll(self) -> str:
        enroll_id = self.book()
        self.provider.ok(doc.ACCEPT_ENROLL, id=enroll_id)
        return enroll_id

    def held_enroll(self) -> str:
        """PENDING, with its payment authorized (a MANUAL hold)."""
        enroll_id = self.book()
        payment_id = intent(self.client, enrollId=enroll_id)["payment"]["id"]
        assert self.client.ok(doc.CONFIRM, paymentId=payment_id)["payment"]["status"] == "AUTHORIZED"
        return enroll_id

    def ready_enroll(self) -> str:
        enroll_id = self.held_enroll()
        self.provider.ok(doc.ACCEPT_ENROLL, id=enroll_id)
        self.provider.ok(doc.MARK_ENROLL_READY, id=enroll_id)
        return enroll_id

    def pending_payment(self) -> str:
        payment_id: str = intent(self.client, enrollId=self.book())["payment"]["id"]
        return payment_id

    def enroll_payment(self) -> str:
        payment = paid_enroll(self.client, self.provider)
        assert payment["status"] == "SUCCEEDED"
        payment_id: str = payment["id"]
        return payment_id

    def package_payment(self) -> str:
        payment_id: str = paid_package(self.client)["id"]
        return payment_id

    def dispute(self) -> str:
        """An inquiry on the enroll payment, as Stripe reports one (the mock providers open none): through the same
        service a webhook or reconcile uses."""
        answer = ProviderDispute(
            provider_dispute_id=f"dp_matrix{self.serial()}",
            amount_minor=10_000,
            currency="USD",
            status=DisputeStatus.WARNING_NEEDS_RESPONSE,
            payment_id=self.shared("enroll_payment"),
        )
        assert self.api.app.state.services.disputes.receive(ProviderName.STRIPE, answer) is True
        with self.db.read() as session:
            dispute_id: str = session.scalars(
                select(Dispute.id).where(Dispute.provider_dispute_id == answer.provider_dispute_id)
            ).one()
            return dispute_id

    def payout_account(self) -> str:
        registered = self.provider.ok(
            doc.REGISTER_PAYOUT_ACCOUNT,
            input={"provider": "STRIPE", "externalAccountId": f"acct_matrix{self.serial()}"},
        )
        account_id: str = registered["payoutAccount"]["id"]
        return account_id

    def verified_account(self) -> str:
        account_id = self.payout_account()
        self.admin.ok(VERIFY_PAYOUT_ACCOUNT, id=account_id)
        return account_id

    def earnings(self) -> str:
        """A completed enroll: 95.00 USD more available to the provider, who has a verified USD account."""
        self.shared("verified_account")
        enroll_id = self.book()
        payment_id = intent(self.client, enrollId=enroll_id, captureMethod="AUTOMATIC")["payment"]["id"]
        self.client.ok(doc.CONFIRM, paymentId=payment_id)
        self.provider.ok(doc.ACCEPT_ENROLL, id=enroll_id)
        self.provider.ok(doc.MARK_ENROLL_READY, id=enroll_id)
        self.client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
        return enroll_id

    def withdrawal(self) -> str:
        self.earnings()
        requested = self.provider.ok(doc.REQUEST_WITHDRAWAL, input={"amount": _usd("50.00")})
        withdrawal_id: str = requested["withdrawal"]["id"]
        return withdrawal_id

    # -- the database, read directly -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table."""
        with self.db.read() as session:
            connection = session.connection()
            return {name: [tuple(row) for row in connection.execute(query)] for name, query in EVERY_ROW.items()}

    def changes_since(self, before: dict[str, list[tuple[Any, ...]]]) -> dict[str, str]:
        """The tables whose rows differ from `before`, with the keys of the rows that are new or changed."""
        after = self.snapshot()
        return {
            name: f"{len(rows)} rows before, {len(after[name])} after; new or changed: "
            + ", ".join(str(row[0]) for row in after[name] if row not in rows)
            for name, rows in before.items()
            if rows != after[name]
        }

    def ids_of(self, model: Any, owners: tuple[str, ...], user: User | None) -> set[str]:
        """The ids of `model` rows whose `owners` columns name `user` (every row when `user` is None)."""
        query = select(model.id)
        if user is not None:
            query = query.where(or_(*(getattr(model, column) == user.id for column in owners)))
        with self.db.read() as session:
            return set(session.scalars(query))

    def live_lots(self, user: User) -> dict[str, int]:
        """The user's unexpired lots with credits left, and how many."""
        now = utcnow()
        with self.db.read() as session:
            rows = session.execute(
                select(CreditLot.id, CreditLot.remaining).where(
                    CreditLot.user_id == user.id, CreditLot.remaining > 0, CreditLot.expires_at > now
                )
            )
            return {row.id: row.remaining for row in rows}

    def available(self, user: User) -> str:
        with self.db.read() as session:
            return Money(available(session, user.id, "USD"), "USD").format()


BUILDERS: dict[str, Callable[[World], str]] = {
    "enroll": World.book,
    "confirmed_enroll": World.confirmed_enroll,
    "held_enroll": World.held_enroll,
    "ready_enroll": World.ready_enroll,
    "pending_payment": World.pending_payment,
    "enroll_payment": World.enroll_payment,
    "package_payment": World.package_payment,
    "payout_account": World.payout_account,
    "dispute": World.dispute,
    "verified_account": World.verified_account,
    "earnings": World.earnings,
    "withdrawal": World.withdrawal,
    "bystander": lambda world: world.bystander.id,
}

# -- what an allowed call must return ---------------------------------------------------------------------------

Variables = Callable[[World, "str | None"], dict[str, Any]]
Check = Callable[[World, str, User, "str | None", Any], None]  # (world, role, caller, target id, field's result)


def lists(
    model: Any,
    owners: tuple[str, ...],
    owned: dict[str, set[str]],
    *,
    admin_sees_all: bool = True,
    connection: bool = True,
) -> Check:
    """The caller sees exactly their own rows (an admin all of them, unless not `admin_sees_all`), counted as such:
    each shared object of `owned` among them exactly when the caller is one of its owners."""

    def check(world: World, role: str, user: User, _target: str | None, result: Any) -> None:
        everything = admin_sees_all and role == "admin"
        if connection:
            assert result["pageInfo"]["hasNextPage"] is False  # the whole list is on the page
            nodes = [edge["node"] for edge in result["edges"]]
        else:
            nodes = result
        seen = {node["id"] for node in nodes}
        expected = world.ids_of(model, owners, None if everything else user)
        assert seen == expected
        if connection:
            assert result["totalCount"] == len(expected)  # a count is not a side channel either
        mine = {world.shared(kind) for kind, roles in owned.items() if everything or role in roles}
        theirs = {world.shared(kind) for kind in owned} - mine
        assert mine <= seen
        assert not theirs & seen

    return check


def by_role(default: Check, **checks: Check) -> Check:
    def check(world: World, role: str, user: User, target: str | None, result: Any) -> None:
        checks.get(role, default)(world, role, user, target, result)

    return check


def no_money(_world: World, _role: str, _user: User, _target: str | None, result: Any) -> None:
    assert result == {"credits": 0, "creditLots": [], "accounts": []}


def own_credits(world: World, _role: str, user: User, _target: str | None, result: Any) -> None:
    lots = world.live_lots(user)
    assert lots, "the client bought credits"
    assert result["credits"] == sum(lots.values())
    assert {lot["id"] for lot in result["creditLots"]} == set(lots)


def own_earnings(world: World, _role: str, user: User, _target: str | None, result: Any) -> None:
    assert result["credits"] == 0
    (usd,) = [account for account in result["accounts"] if account["currency"] == "USD"]
    assert usd["available"]["amount"] == world.available(user) != "0.00"


def packages_listed(_world: World, _role: str, _user: User, _target: str | None, result: Any) -> None:
    assert {"trial", "standard"} <= {package["code"] for package in result}


def platform_books(_world: World, _role: str, _user: User, _target: str | None, result: Any) -> None:
    assert "USD" in {row["currency"] for row in result}


def is_target(_world: World, _role: str, _user: User, target: str | None, result: Any) -> None:
    assert result["id"] == target


def becomes(node: str, status: str, *, payment: str | None = None) -> Check:
    """The mutation returns the target as `node`, now in `status` (and its payment in `payment`)."""

    def check(_world: World, _role: str, _user: User, target: str | None, result: Any) -> None:
        assert (result[node]["id"], result[node]["status"]) == (target, status)
        if payment is not None:
            assert result["payment"]["status"] == payment

    return check


def refunded(_world: World, _role: str, _user: User, target: str | None, result: Any) -> None:
    assert (result["refund"]["paymentId"], result["refund"]["status"]) == (target, "SUCCEEDED")
    assert (result["payment"]["id"], result["payment"]["status"]) == (target, "REFUNDED")


def pays_enroll(_world: World, _role: str, user: User, target: str | None, result: Any) -> None:
    payment = result["payment"]
    assert (payment["purpose"], payment["payerId"], payment["enroll"]["id"]) == ("ENROLL", user.id, target)


def buys_package(_world: World, _role: str, user: User, _target: str | None, result: Any) -> None:
    payment = result["payment"]
    assert (payment["purpose"], payment["payerId"], payment["package"]["code"]) == ("PACKAGE", user.id, "trial")


def books_provider(world: World, _role: str, user: User, _target: str | None, result: Any) -> None:
    enroll = result["enroll"]
    assert (enroll["clientId"], enroll["providerId"], enroll["status"]) == (user.id, world.provider.id, "PENDING")


def spends_one(_world: World, _role: str, _user: User, _target: str | None, result: Any) -> None:
    assert (result["transaction"]["type"], result["transaction"]["credits"]) == ("SPENT", -1)


def registers_own_account(world: World, _role: str, user: User, _target: str | None, result: Any) -> None:
    assert result["payoutAccount"]["status"] == "PENDING"
    assert result["payoutAccount"]["id"] in world.ids_of(PayoutAccount, ("user_id",), user)


def requests_own_withdrawal(_world: World, _role: str, user: User, _target: str | None, result: Any) -> None:
    withdrawal = result["withdrawal"]
    assert (withdrawal["providerId"], withdrawal["status"], withdrawal["amount"]["amount"]) == (
        user.id,
        "PENDING",
        "50.00",
    )


# -- the table -----------------------------------------------------------------------------------------------------


def _nothing(_world: World, _target: str | None) -> dict[str, Any]:
    return {}


def _page(_world: World, _target: str | None) -> dict[str, Any]:
    return {"first": 100}


def _by_id(_world: World, target: str | None) -> dict[str, Any]:
    return {"id": target}


def _book(provider_id: str | None) -> dict[str, Any]:
    return {"providerId": provider_id, "title": "Lesson", "amount": "10.00", "currency": "USD"}


@dataclass(frozen=True, slots=True)
class Operation:
    """A call of one field: its document and variables, the object it acts on, what an allowed call returns."""

    document: str
    check: Check
    variables: Variables = _nothing
    target: str | None = None  # the kind of object whose id goes into the variables
    needs: tuple[str, ...] = ()  # shared objects that must exist first (what lists and balances show)

    @property
    def mutation(self) -> bool:
        return self.document.lstrip().startswith("mutation")


PAYMENTS_SEEN = {"enroll_payment": {"client", "provider"}, "package_payment": {"client"}}

# "field" or "field/variant": the call
OPERATIONS: dict[str, Operation] = {
    "packages": Operation(doc.PACKAGES, packages_listed),
    "payments": Operation(
        PAYMENTS, lists(Payment, ("payer_id", "payee_id"), PAYMENTS_SEEN), _page, needs=tuple(PAYMENTS_SEEN)
    ),
    "payment/enroll": Operation(doc.PAYMENT, is_target, _by_id, "enroll_payment"),
    "payment/package": Operation(doc.PAYMENT, is_target, _by_id, "package_payment"),
    "enroll": Operation(doc.ENROLL, is_target, _by_id, "enroll"),
    "enrolls": Operation(
        doc.ENROLLS,
        lists(Enroll, ("client_id", "provider_id"), {"enroll": {"client", "provider"}}),
        _page,
        needs=("enroll",),
    ),
    "balances": Operation(
        doc.BALANCES,
        by_role(no_money, client=own_credits, provider=own_earnings),
        needs=("package_payment", "earnings"),
    ),
    "creditTransactions": Operation(
        doc.CREDIT_TRANSACTIONS,
        lists(CreditTransaction, ("user_id",), {}, admin_sees_all=False),
        _page,
        needs=("package_payment",),
    ),
    "withdrawals": Operation(
        WITHDRAWALS, lists(Withdrawal, ("user_id",), {"withdrawal": {"provider"}}), _page, needs=("withdrawal",)
    ),
    "disputes": Operation(
        DISPUTES, lists(Dispute, ("payee_id",), {"dispute": {"provider"}}), _page, needs=("dispute",)
    ),
    "payoutAccounts": Operation(
        PAYOUT_ACCOUNTS,
        lists(PayoutAccount, ("user_id",), {"payout_account": {"provider"}}, connection=False),
        needs=("payout_account",),
    ),
    "platformBalances": Operation(doc.PLATFORM_BALANCES, platform_books, needs=("enroll_payment",)),
    "createIntent/enroll": Operation(
        doc.CREATE_INTENT, pays_enroll, lambda _world, target: {"input": {"enrollId": target}}, "enroll"
    ),
    "createIntent/package": Operation(
        doc.CREATE_INTENT, buys_package, lambda _world, _target: {"input": {"packageCode": "trial"}}
    ),
    "confirm": Operation(
        doc.CONFIRM, becomes("payment", "AUTHORIZED"), lambda _world, target: {"paymentId": target}, "pending_payment"
    ),
    "refund/enroll": Operation(
        doc.REFUND, refunded, lambda _world, target: {"input": {"paymentId": target}}, "enroll_payment"
    ),
    "refund/package": Operation(
        doc.REFUND, refunded, lambda _world, target: {"input": {"paymentId": target}}, "package_payment"
    ),
    "createEnroll/provider": Operation(
        doc.CREATE_ENROLL, books_provider, lambda world, _target: _book(world.provider.id)
    ),
    "createEnroll/non-provider": Operation(
        doc.CREATE_ENROLL, books_provider, lambda _world, target: _book(target), "bystander"
    ),
    "acceptEnroll": Operation(doc.ACCEPT_ENROLL, becomes("enroll", "CONFIRMED"), _by_id, "enroll"),
    "markEnrollReady": Operation(doc.MARK_ENROLL_READY, becomes("enroll", "READY"), _by_id, "confirmed_enroll"),
    "confirmEnroll": Operation(
        doc.CONFIRM_ENROLL, becomes("enroll", "COMPLETED", payment="SUCCEEDED"), _by_id, "ready_enroll"
    ),
    "cancelEnroll": Operation(
        doc.CANCEL_ENROLL,
        becomes("enroll", "CANCELLED", payment="CANCELED"),
        lambda _world, target: {"id": target, "reason": "plans changed"},
        "held_enroll",
    ),
    "spendCredits": Operation(
        doc.SPEND_CREDITS,
        spends_one,
        lambda _world, _target: {"input": {"credits": 1, "reference": "lesson"}},
        needs=("package_payment",),
    ),
    "registerPayoutAccount": Operation(
        doc.REGISTER_PAYOUT_ACCOUNT,
        registers_own_account,
        lambda world, _target: {"input": {"provider": "STRIPE", "externalAccountId": f"acct_new{world.serial()}"}},
    ),
    "verifyPayoutAccount": Operation(
        VERIFY_PAYOUT_ACCOUNT, becomes("payoutAccount", "VERIFIED"), _by_id, "payout_account"
    ),
    "rejectPayoutAccount": Operation(
        REJECT_PAYOUT_ACCOUNT, becomes("payoutAccount", "REJECTED"), _by_id, "payout_account"
    ),
    "requestWithdrawal": Operation(
        doc.REQUEST_WITHDRAWAL,
        requests_own_withdrawal,
        lambda _world, _target: {"input": {"amount": _usd("50.00")}},
        needs=("earnings",),
    ),
    "approveWithdrawal": Operation(doc.APPROVE_WITHDRAWAL, becomes("withdrawal", "APPROVED"), _by_id, "withdrawal"),
    "rejectWithdrawal": Operation(
        doc.REJECT_WITHDRAWAL,
        becomes("withdrawal", "REJECTED"),
        lambda _world, target: {"id": target, "reason": "checks pending"},
        "withdrawal",
    ),
}

OK = "allowed"
UNAUTHENTICATED, FORBIDDEN, NOT_FOUND = "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND"
INVALID_INPUT, INVALID_STATE, INSUFFICIENT_FUNDS = "INVALID_INPUT", "INVALID_STATE", "INSUFFICIENT_FUNDS"

# Who gets what (CONTRACT.md). `stranger`: signed in, no roles; `rival`: another provider; neither is related to
# the objects. Notes: createIntent/enroll is NOT_FOUND for all but the enroll's client, as the contract says; the
# provider booking themselves is INVALID_INPUT; spendCredits and requestWithdrawal run while the client has credits
# and the provider has money and a verified account, which the others must not reach (a rival has no verified
# account of their own: INVALID_STATE).
# fmt: off
EXPECTED: dict[str, tuple[str, str, str, str, str, str]] = {
    #                            anonymous        stranger            rival               client              provider            admin
    "packages":                  (OK,              OK,                 OK,                 OK,                 OK,                 OK),
    "payments":                  (UNAUTHENTICATED, OK,                 OK,                 OK,                 OK,                 OK),
    "payment/enroll":            (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          OK,                 OK,                 OK),
    "payment/package":           (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          OK,                 NOT_FOUND,          OK),
    "enroll":                    (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          OK,                 OK,                 OK),
    "enrolls":                   (UNAUTHENTICATED, OK,                 OK,                 OK,                 OK,                 OK),
    "balances":                  (UNAUTHENTICATED, OK,                 OK,                 OK,                 OK,                 OK),
    "creditTransactions":        (UNAUTHENTICATED, OK,                 OK,                 OK,                 OK,                 OK),
    "withdrawals":               (UNAUTHENTICATED, OK,                 OK,                 OK,                 OK,                 OK),
    "disputes":                  (UNAUTHENTICATED, OK,                 OK,                 OK,                 OK,                 OK),
    "payoutAccounts":            (UNAUTHENTICATED, OK,                 OK,                 OK,                 OK,                 OK),
    "platformBalances":          (UNAUTHENTICATED, FORBIDDEN,          FORBIDDEN,          FORBIDDEN,          FORBIDDEN,          OK),
    "createIntent/enroll":       (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          OK,                 NOT_FOUND,          NOT_FOUND),
    "createIntent/package":      (UNAUTHENTICATED, OK,                 OK,                 OK,                 OK,                 OK),
    "confirm":                   (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          OK,                 OK,                 OK),
    "refund/enroll":             (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          FORBIDDEN,          OK,                 OK),
    "refund/package":            (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          FORBIDDEN,          NOT_FOUND,          OK),
    "createEnroll/provider":     (UNAUTHENTICATED, OK,                 OK,                 OK,                 INVALID_INPUT,      OK),
    "createEnroll/non-provider": (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          NOT_FOUND,          NOT_FOUND,          NOT_FOUND),
    "acceptEnroll":              (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          FORBIDDEN,          OK,                 FORBIDDEN),
    "markEnrollReady":           (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          FORBIDDEN,          OK,                 FORBIDDEN),
    "confirmEnroll":             (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          OK,                 FORBIDDEN,          FORBIDDEN),
    "cancelEnroll":              (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          OK,                 OK,                 OK),
    "spendCredits":              (UNAUTHENTICATED, INSUFFICIENT_FUNDS, INSUFFICIENT_FUNDS, OK,                 INSUFFICIENT_FUNDS, INSUFFICIENT_FUNDS),
    "registerPayoutAccount":     (UNAUTHENTICATED, FORBIDDEN,          OK,                 FORBIDDEN,          OK,                 FORBIDDEN),
    "verifyPayoutAccount":       (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          NOT_FOUND,          FORBIDDEN,          OK),
    "rejectPayoutAccount":       (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          NOT_FOUND,          FORBIDDEN,          OK),
    "requestWithdrawal":         (UNAUTHENTICATED, FORBIDDEN,          INVALID_STATE,      FORBIDDEN,          OK,                 FORBIDDEN),
    "approveWithdrawal":         (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          NOT_FOUND,          FORBIDDEN,          OK),
    "rejectWithdrawal":          (UNAUTHENTICATED, NOT_FOUND,          NOT_FOUND,          NOT_FOUND,          FORBIDDEN,          OK),
}
# fmt: on


@dataclass(frozen=True, slots=True)
class Case:
    key: str  # "field" or "field/variant"
    role: str
    expected: str  # OK or an ErrorCode

    @property
    def field(self) -> str:
        return self.key.split("/")[0]

    @property
    def operation(self) -> Operation:
        return OPERATIONS[self.key]

    @property
    def id(self) -> str:
        return f"{self.key}-{self.role}"


CASES = [Case(key, role, expected) for key, row in EXPECTED.items() for role, expected in zip(ROLES, row, strict=True)]


# -- the world, once per backend ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[World]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("access-matrix") / "payql.db"
        shutil.copyfile(sqlite_template, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_migrated")
        truncate_postgres(url)
    settings = make_settings(url, rate_limit="1000000/minute")  # every caller makes far more than 120 calls
    database = Database(settings.database_url)
    with Api(create_app(settings, db=database), settings) as api:
        yield World(api, database)
        with database.read() as session:
            problems = ledger_problems(session)
    database.dispose()
    assert problems == [], "ledger check failed:\n" + "\n".join(problems)


# -- the tests ---------------------------------------------------------------------------------------------------


def _refusal(case: Case, body: dict[str, Any]) -> None:
    """`body` refuses with the row's code and carries nothing of any object."""
    if case.expected == UNAUTHENTICATED or not case.operation.mutation:  # a GraphQL error, the field null
        assert error_codes(body) == [case.expected], body
        assert body["data"] in (None, {case.field: None}), body
        return
    assert "errors" not in body, body
    payload = body["data"][case.field]
    assert [error["code"] for error in payload["errors"]] == [case.expected], payload["errors"]
    assert {key: value for key, value in payload.items() if key != "errors" and value is not None} == {}, payload


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_access(world: World, case: Case) -> None:
    operation = case.operation
    for kind in operation.needs:
        world.shared(kind)
    user = world.users[case.role]

    if case.expected == OK:
        target = None
        if operation.target is not None:  # an allowed mutation changes its object: a fresh one
            target = world.fresh(operation.target) if operation.mutation else world.shared(operation.target)
        result = user.data(operation.document, **operation.variables(world, target))[case.field]
        if operation.mutation:
            assert result["errors"] == [], result["errors"]
        operation.check(world, case.role, user, target, result)
        return

    target = world.shared(operation.target) if operation.target is not None else None
    before = world.snapshot() if operation.mutation else None
    body = user.gql(operation.document, **operation.variables(world, target))
    # Refused as a random id is, so that the refusal says nothing about the object. (FORBIDDEN is for callers who
    # may see the object; the other codes come after the object was found visible, or concern no object.)
    blind = operation.target is not None and case.expected in {NOT_FOUND, UNAUTHENTICATED}
    missing = None
    if blind:
        missing = user.gql(operation.document, **operation.variables(world, world.missing(operation.target)))
    changed = world.changes_since(before) if before is not None else {}
    for kind in (operation.target, *operation.needs) if changed else ():
        if kind is not None:
            world.spoil(kind)  # the rows after this one get new objects, whatever this refusal did to these

    _refusal(case, body)
    assert changed == {}, f"a refused {case.field} wrote to the database"
    if missing is not None:
        assert body == missing, "another user's object is answered differently from a missing one"


def _root_fields(schema: graphql.GraphQLSchema) -> set[tuple[str, str]]:
    roots = {"Query": schema.query_type, "Mutation": schema.mutation_type}
    return {(root, name) for root, kind in roots.items() if kind is not None for name in kind.fields}


def test_every_query_and_mutation_has_a_row_for_every_caller() -> None:
    served = graphql.build_schema(build_schema(make_settings("sqlite://")).as_str())
    committed = graphql.build_schema(SDL.read_text(encoding="utf-8"))
    covered: set[tuple[str, str]] = set()
    for key, operation in OPERATIONS.items():
        # the document calls the field its row is filed under, and is valid against the schema
        document = graphql.parse(operation.document)
        assert graphql.validate(served, document) == [], key
        (definition,) = document.definitions
        assert isinstance(definition, graphql.OperationDefinitionNode)
        (selection,) = definition.selection_set.selections
        assert isinstance(selection, graphql.FieldNode)
        assert selection.name.value == key.split("/")[0], key
        covered.add(("Mutation" if operation.mutation else "Query", selection.name.value))
        assert definition.operation.value == ("mutation" if operation.mutation else "query"), key

    assert _root_fields(served) == _root_fields(committed) == covered, "a field without access rows, or a stale row"
    assert set(EXPECTED) == set(OPERATIONS), "an operation without expectations, or expectations without a call"

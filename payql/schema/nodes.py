"""Adapters that present rows as the GraphQL object types: plain properties, read by GraphQL as attributes.

A field with a Strawberry resolver costs several times a plain attribute read (argument inspection, extension
wrapping), and a page of payments reads hundreds of fields: so the types in `types.py` declare fields only and
these adapters compute them (money formatting, nested objects through the per-request loaders).
"""

from __future__ import annotations

import re
from functools import lru_cache
from operator import attrgetter
from typing import Any

import strawberry

from payql.models.enums import RefundStatus
from payql.money import format_minor
from payql.schema.loaders import Loaders
from payql.schema.types import CreditPackage, Money, PayoutAccount, Withdrawal
from payql.services.catalogue import Package
from payql.services.lifecycle import REFUSED
from payql.services.queries import Record, encode_cursor

_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ENDED_UNPAID = frozenset({RefundStatus.FAILED, RefundStatus.CANCELED})


def _column(name: str) -> Any:
    # `self._row.<name>` read by `attrgetter` (C): a page reads hundreds of these
    return property(attrgetter(f"_row.{name}"))


def _money(minor: str) -> Any:
    def get(self: Any) -> Money:
        row = self._row
        currency = row.currency
        return Money(amount=format_minor(getattr(row, minor), currency), currency=currency)  # `Money.of`, inline

    return property(get)


def _optional_money(minor: str) -> Any:
    def get(self: Any) -> Money | None:
        row = self._row
        value = getattr(row, minor)
        return None if value is None else Money(amount=format_minor(value, row.currency), currency=row.currency)

    return property(get)


@lru_cache(maxsize=256)
def package_type(package: Package) -> CreditPackage:
    return CreditPackage(
        id=strawberry.ID(package.code),
        code=package.code,
        name=package.name,
        credits=package.credits,
        price=Money.of(package.price.minor, package.price.currency),
        unit_price=package.unit_price,
    )


class RefundNode:
    __slots__ = ("_row",)

    def __init__(self, row: Record) -> None:
        self._row = row

    id = _column("id")
    payment_id = _column("payment_id")
    status = _column("status")
    reason = _column("reason")
    created_at = _column("created_at")
    amount = _money("amount_minor")

    @property
    def failure_reason(self) -> str | None:
        """A short code as the provider gave it; anything else (older rows held the provider's prose) is shown as
        "provider_refused", so no provider text reaches a client."""
        value: str | None = self._row.failure_message
        if value is None or self._row.status not in _ENDED_UNPAID:
            return None
        return value if _CODE.fullmatch(value) else REFUSED


class DisputeNode:
    __slots__ = ("_row",)

    def __init__(self, row: Record) -> None:
        self._row = row

    id = _column("id")
    payment_id = _column("payment_id")
    status = _column("status")
    reason = _column("reason")
    evidence_due_by = _column("evidence_due_by")
    created_at = _column("created_at")
    amount = _money("amount_minor")


class _Loaded:
    """A row and the request's loaders, for nodes with nested objects."""

    __slots__ = ("_loaders", "_row")

    def __init__(self, row: Record, loaders: Loaders) -> None:
        self._row = row
        self._loaders = loaders


class EnrollNode(_Loaded):
    __slots__ = ()

    id = _column("id")
    status = _column("status")
    client_id = _column("client_id")
    provider_id = _column("provider_id")
    title = _column("title")
    created_at = _column("created_at")
    expires_at = _column("expires_at")
    price = _money("price_minor")

    @property
    def payment(self) -> PaymentNode | None:
        row = self._loaders.enroll_payment.load(self._row.id)
        return None if row is None else PaymentNode(row, self._loaders)


class PaymentNode(_Loaded):
    __slots__ = ()

    id = _column("id")
    status = _column("status")
    purpose = _column("purpose")
    provider = _column("provider")
    mock = _column("mock")
    capture_method = _column("capture_method")
    payer_id = _column("payer_id")
    payee_id = _column("payee_id")
    failure_code = _column("failure_code")
    failure_message = _column("failure_message")
    created_at = _column("created_at")
    updated_at = _column("updated_at")
    paid_at = _column("paid_at")
    amount = _money("amount_minor")
    captured_amount = _money("captured_minor")
    refunded_amount = _money("refunded_minor")
    platform_fee = _optional_money("fee_minor")
    tax_amount = _optional_money("tax_minor")
    payee_amount = _optional_money("payee_minor")

    @property
    def enroll(self) -> EnrollNode | None:
        enroll_id = self._row.enroll_id
        if enroll_id is None:
            return None
        row = self._loaders.enroll.load(enroll_id)
        return None if row is None else EnrollNode(row, self._loaders)

    @property
    def refunds(self) -> list[RefundNode]:
        return [RefundNode(row) for row in self._loaders.refunds.load(self._row.id)]

    @property
    def disputes(self) -> list[DisputeNode]:
        return [DisputeNode(row) for row in self._loaders.disputes.load(self._row.id)]

    @property
    def package(self) -> CreditPackage | None:
        code = self._row.package_code
        package = None if code is None else self._loaders.catalogue.get(code)
        return None if package is None else package_type(package)


class EdgeNode:
    """A page's item and its cursor, encoded only when asked for (a `Connection`'s `edges`)."""

    __slots__ = ("_id", "node")

    def __init__(self, object_id: str, node: Any) -> None:
        self._id = object_id
        self.node = node

    @property
    def cursor(self) -> str:
        return encode_cursor(self._id)


def payment_node(loaders: Loaders, row: Record | None) -> Any:
    """The GraphQL `Payment` for a row (typed Any: it stands in for the Strawberry type)."""
    return None if row is None else PaymentNode(row, loaders)


def enroll_node(loaders: Loaders, row: Record | None) -> Any:
    return None if row is None else EnrollNode(row, loaders)


def refund_node(row: Record | None) -> Any:
    return None if row is None else RefundNode(row)


def dispute_node(row: Record) -> Any:
    return DisputeNode(row)


def withdrawal_type(row: Record) -> Withdrawal:
    return Withdrawal(
        id=strawberry.ID(row.id),
        provider_id=strawberry.ID(row.user_id),
        amount=Money.of(row.amount_minor, row.currency),
        status=row.status,
        reason=row.reason,
        failure_reason=row.failure_reason,
        created_at=row.created_at,
        processed_at=row.processed_at,
    )


def payout_account_type(row: Record) -> PayoutAccount:
    return PayoutAccount(
        id=strawberry.ID(row.id),
        provider=row.provider,
        status=row.status.value,
        currency=row.currency,
        external_account_id=row.external_account_id,
        created_at=row.created_at,
    )

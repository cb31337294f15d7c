"""What every resolver shares: the caller, money inputs, and domain errors as `UserError`s."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from strawberry.types import Info

from payql.auth import Principal
from payql.money import Money, MoneyError, parse_amount
from payql.providers.base import ProviderError
from payql.schema.context import Context
from payql.schema.enums import ErrorCode
from payql.schema.inputs import MoneyInput
from payql.schema.types import UserError
from payql.services.errors import DomainError, InvalidInput

P = TypeVar("P")
GQLInfo = Info[Context, None]


def caller(info: GQLInfo) -> Principal:
    """The signed-in user, recorded in `users` on first sight; UNAUTHENTICATED otherwise."""
    principal = info.context.require_principal()
    info.context.services.users.ensure(principal)
    return principal


def money(value: MoneyInput, field: str) -> Money:
    try:
        return parse_amount(value.amount, value.currency)
    except MoneyError as exc:
        raise InvalidInput(exc.message, field=field) from exc


def user_error(exc: DomainError | ProviderError) -> UserError:
    field = exc.field if isinstance(exc, DomainError) else None
    provider_code = exc.provider_code if isinstance(exc, ProviderError) else None
    return UserError(code=ErrorCode(exc.code), field=field, message=exc.message, provider_code=provider_code)


def mutate(build: Callable[[], P], on_error: Callable[[list[UserError]], P]) -> P:
    """Run a mutation's use case; expected failures become the payload's `errors`, everything else propagates
    (and is masked for the client and logged with the request id)."""
    try:
        return build()
    except (DomainError, ProviderError) as exc:
        return on_error([user_error(exc)])

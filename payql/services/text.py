"""Bounds on the free text clients send (CONTRACT.md, "Text inputs"): the same on every database, checked before
anything is written, so a long value is `INVALID_INPUT` on SQLite (which would store it) and on PostgreSQL (which
would fail the statement) alike. Each bound is its column's length; a URL or a payment method is never stored
longer than a browser or a provider would take."""

from __future__ import annotations

from typing import Final

from payql.services.errors import InvalidInput

TITLE: Final = 200
REFERENCE: Final = 200
REASON: Final = 500
NOTE: Final = 500
IDEMPOTENCY_KEY: Final = 255
EXTERNAL_ACCOUNT_ID: Final = 255
RETURN_URL: Final = 2048
PAYMENT_METHOD: Final = 255


def bounded(value: str | None, field: str, longest: int) -> str | None:
    """`value` unchanged when it has at most `longest` characters (None stays None); INVALID_INPUT otherwise."""
    if value is not None and len(value) > longest:
        raise InvalidInput(f"{field} must be at most {longest} characters", field=field)
    return value

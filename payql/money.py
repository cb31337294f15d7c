"""Money as integer minor units plus an ISO 4217 currency code (DESIGN.md section 2, rule 4).

Amounts are only ever whole numbers of minor units and are never scaled by multiplying: a client's
decimal string is parsed digit by digit into minor units, and minor units are formatted back into a
decimal string with exactly the currency's number of decimals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Self

# ISO 4217 minor-unit exponents. These are the ISO values; provider quirks (a provider that wants a
# zero-decimal currency sent with two decimals, say) belong in that provider's adapter, not here.
EXPONENTS: Final[dict[str, int]] = {
    # two decimals
    "AED": 2,
    "AMD": 2,
    "ARS": 2,
    "AUD": 2,
    "AZN": 2,
    "BGN": 2,
    "BRL": 2,
    "BYN": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EGP": 2,
    "EUR": 2,
    "GBP": 2,
    "GEL": 2,
    "HKD": 2,
    "HUF": 2,
    "ILS": 2,
    "INR": 2,
    "KZT": 2,
    "MDL": 2,
    "MXN": 2,
    "MYR": 2,
    "NOK": 2,
    "NZD": 2,
    "PLN": 2,
    "RON": 2,
    "RUB": 2,
    "SAR": 2,
    "SEK": 2,
    "SGD": 2,
    "THB": 2,
    "TRY": 2,
    "TWD": 2,
    "UAH": 2,
    "USD": 2,
    "ZAR": 2,
    # no minor unit
    "CLP": 0,
    "ISK": 0,
    "JPY": 0,
    "KRW": 0,
    "PYG": 0,
    "UGX": 0,
    "VND": 0,
    "XAF": 0,
    "XOF": 0,
    # three decimals
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}

# The longest integer part parse_amount accepts; it keeps absurd inputs away from int() and the database.
MAX_INTEGER_DIGITS: Final = 30
# The largest amount payql accepts anywhere, in minor units (CONTRACT.md, "Currency units at the provider"): far
# above any real payment (10 trillion USD), and far below what a BIGINT column, a SQLite INTEGER or a sum of many
# such amounts can hold, so no amount a client sends can ever overflow a column or turn a SQLite sum into a float.
MAX_MINOR: Final = 10**15

# [0-9] rather than \d: \d also matches non-ASCII digits, which int() would happily accept.
_AMOUNT_RE: Final = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_BPS_WHOLE: Final = 10_000
_SHOWN_CHARS: Final = 40


class MoneyError(ValueError):
    """An invalid amount or currency; `message` is safe to show to the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _show(value: str) -> str:
    """Quote a client's value for an error message without echoing an unbounded string back."""
    if len(value) > _SHOWN_CHARS:
        return repr(value[:_SHOWN_CHARS] + "...")
    return repr(value)


def _is_int(value: object) -> bool:
    # bool is an int subclass; True is not an amount.
    return isinstance(value, int) and not isinstance(value, bool)


def exponent(currency: str) -> int:
    """The number of decimals of `currency`, an upper-case ISO 4217 code such as "USD"."""
    found = EXPONENTS.get(currency) if isinstance(currency, str) else None
    if found is None:
        shown = _show(currency) if isinstance(currency, str) else type(currency).__name__
        raise MoneyError(f"unknown currency {shown}")
    return found


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of money: `minor` is an integer count of the currency's minor units (cents for USD,
    yen for JPY, fils for KWD) and `currency` is an upper-case ISO 4217 code listed in EXPONENTS.

    Money(5000, "USD") is 50.00 USD. There is no other representation: the database stores the same
    two values (BigInteger, String(3)), Stripe receives `minor` as it is, and decimal strings for
    YooKassa and GraphQL come from `format()`. Arithmetic mixes only amounts of one currency.
    """

    minor: int
    currency: str

    def __post_init__(self) -> None:
        exponent(self.currency)
        if not _is_int(self.minor):
            raise MoneyError(f"minor units must be an int, not {type(self.minor).__name__}")

    @classmethod
    def zero(cls, currency: str) -> Self:
        return cls(0, currency)

    def _same_currency(self, other: Money, operation: str) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot {operation} {other.currency} and {self.currency}")

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "add")
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "subtract")
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def is_zero(self) -> bool:
        return self.minor == 0

    def format(self) -> str:
        """The amount in major units with exactly the currency's decimals: "50.00", "1500", "1.234"."""
        return format_minor(self.minor, self.currency)

    def __str__(self) -> str:
        return f"{self.format()} {self.currency}"


def format_minor(minor: int, currency: str) -> str:
    """`minor` units of `currency` as a decimal string in major units, e.g. (-5, "USD") -> "-0.05"."""
    # the checks of `exponent` and `_is_int`, inline for the common case: a page formats hundreds of amounts
    places = EXPONENTS.get(currency) if type(currency) is str else None
    if places is None:
        places = exponent(currency)
    if type(minor) is not int and not _is_int(minor):
        raise MoneyError(f"minor units must be an int, not {type(minor).__name__}")
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor))
    if places == 0:
        return sign + digits
    digits = digits.rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def parse_amount(
    amount: str,
    currency: str,
    *,
    allow_zero: bool = False,
    allow_negative: bool = False,
) -> Money:
    """Parse a client's decimal string in major units ("50.00" USD) into Money, strictly.

    `currency` is stripped and upper-cased, then must be in EXPONENTS. `amount` is stripped of
    surrounding whitespace and must then be ASCII digits with an optional leading "-" and an optional
    "." followed by at least one digit; nothing else is accepted: no "+", no exponent ("1e3"), no
    thousands separators, no "NaN" or "Infinity", no bare "1." or ".5", at most 30 integer digits.

    The decimals may be fewer than the currency's exponent ("50.5" USD is 5050 minor units) but never
    more, not even trailing zeros: "50.000" USD and "1500.0" JPY are refused, because a client that
    sends them has misunderstood the currency. Zero (including "-0") is refused unless `allow_zero`,
    a negative amount unless `allow_negative`, and anything beyond MAX_MINOR (10^15 minor units) either way.
    Every refusal is a MoneyError naming the problem.
    """
    if not isinstance(currency, str):
        raise MoneyError(f"currency must be a string, not {type(currency).__name__}")
    code = currency.strip().upper()
    places = exponent(code)
    if not isinstance(amount, str):
        raise MoneyError(f"amount must be a string, not {type(amount).__name__}")
    text = amount.strip()
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise MoneyError(f"amount {_show(text)} is not a decimal number")
    minus, whole, decimals = match.groups()
    if len(whole) > MAX_INTEGER_DIGITS:
        raise MoneyError(f"amount {_show(text)} has more than {MAX_INTEGER_DIGITS} integer digits")
    if decimals is not None and len(decimals) > places:
        raise MoneyError(f"amount {_show(text)} has more than {places} decimals for {code}")
    fraction = (decimals or "").ljust(places, "0")
    minor = int(whole + fraction)
    if minus:
        minor = -minor
    if minor == 0 and not allow_zero:
        raise MoneyError("amount must not be zero" if allow_negative else "amount must be positive")
    if minor < 0 and not allow_negative:
        raise MoneyError("amount must not be negative" if allow_zero else "amount must be positive")
    if abs(minor) > MAX_MINOR:
        raise MoneyError(f"amount {_show(text)} is larger than {format_minor(MAX_MINOR, code)} {code}")
    return Money(minor, code)


def _check_bps(name: str, bps: int) -> None:
    if not _is_int(bps) or not 0 <= bps <= _BPS_WHOLE:
        raise MoneyError(f"{name} must be an int from 0 to {_BPS_WHOLE} basis points, got {bps!r}")


def split_fee(amount_minor: int, platform_bps: int, tax_bps: int) -> tuple[int, int, int]:
    """Split a payment of `amount_minor` into (platform fee, tax, payee's share), all in minor units.

    fee = floor(A * platform_bps / 10000); tax = floor((A - fee) * tax_bps / 10000) is withheld from what
    is left; payee = A - fee - tax. Rounding always favours the payee, and the three parts sum to A.
    """
    if not _is_int(amount_minor) or amount_minor < 0:
        raise MoneyError(f"amount must be a non-negative int of minor units, got {amount_minor!r}")
    _check_bps("platform_bps", platform_bps)
    _check_bps("tax_bps", tax_bps)
    fee = amount_minor * platform_bps // _BPS_WHOLE
    tax = (amount_minor - fee) * tax_bps // _BPS_WHOLE
    return fee, tax, amount_minor - fee - tax


def prorate(part: int, whole: int, value: int) -> int:
    """floor(part * value / whole): the share of `value` that `part` of `whole` carries, e.g. the
    platform fee to reverse when `part` of a `whole` payment is refunded."""
    for name, number in (("part", part), ("whole", whole), ("value", value)):
        if not _is_int(number) or number < 0:
            raise MoneyError(f"{name} must be a non-negative int, got {number!r}")
    if whole == 0:
        raise MoneyError("whole must be positive")
    return part * value // whole

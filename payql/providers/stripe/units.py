"""Amounts in Stripe's units (https://docs.stripe.com/currencies), to and from payql's ISO 4217 minor units.

payql holds every amount in ISO 4217 minor units (`payql.money.EXPONENTS`). Stripe's `amount` fields are in Stripe's
own "smallest currency unit", which is the ISO minor unit except where Stripe says otherwise:

- Zero-decimal currencies (BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF): the amount is in whole
  units (500 is ¥500). Where ISO agrees (every one payql accepts today) the amount goes as it is; a currency whose
  ISO minor unit is smaller (MGA: ISO has 2 decimals) must be whole and is divided.
- ISK: ISO 4217 gives it no minor unit (payql's 1 is one króna), but Stripe keeps ISK a two-decimal currency (100 is
  one króna) and, since 14 April 2023, refuses an ISK amount not divisible by 100
  (`invalid_charge_amount_no_decimal_compatible`). payql's krónur are multiplied by 100 on the way out, so they
  are always whole; a Stripe amount read back is divided by 100 (one in fractional krónur is unreadable).
- Three-decimal currencies (BHD JOD KWD OMR TND): ISO and Stripe agree on 3 decimals, but Stripe requires the last
  digit to be 0 (5.124 KWD is refused; 5.120 is taken). Other ISO three-decimal currencies (IQD, LYD) are not among
  Stripe's and are refused.
- HUF and TWD: two decimals for charges, but payouts must be whole units (the amount divisible by 100).
- Every amount is at most 99,999,999 in Stripe's units (eight digits: 999,999.99 USD, ¥99,999,999). Stripe states
  the limit for charges; payql applies it to every amount it sends (refunds and captures are never larger than
  their charge; a larger transfer is refused rather than guessed at).

A refusal is a `ProviderInvalidRequest` (`INVALID_INPUT`) raised before Stripe is called, with payql's own message.
Stripe's minimum amounts depend on conversion rates and are left to Stripe (its `amount_too_small` maps to the same
code).
"""

from __future__ import annotations

from typing import Final

from payql.money import MoneyError, exponent, format_minor
from payql.providers.base import ProviderError, ProviderInvalidRequest

ZERO_DECIMAL: Final = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL: Final = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# ISO says no decimals, Stripe takes two ("to maintain backwards compatibility") and wants them zero: payql's whole
# krónur times 100 always are, so ISK needs no check of its own, only the scaling every currency gets.
TWO_DECIMAL_WHOLE: Final = frozenset({"ISK"})
WHOLE_PAYOUTS: Final = frozenset({"HUF", "TWD"})
MAXIMUM: Final = 99_999_999
_THREE_DECIMAL_STEP: Final = 10
_WHOLE: Final = 100


def _scale(places: int) -> int:
    """10 to the power `places` (0 to 3), as an int (`10 ** n` is typed as Any)."""
    return int("1" + "0" * places)


def stripe_exponent(currency: str) -> int:
    """How many decimals Stripe's amounts in `currency` (upper-case ISO code) have."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    if exponent(currency) == 3:  # noqa: PLR2004 - an ISO three-decimal currency Stripe does not list
        raise ProviderInvalidRequest(f"Stripe does not take payments in {currency}")
    return 2


def _iso_exponent(currency: str) -> int:
    try:
        return exponent(currency)
    except MoneyError as exc:
        raise ProviderInvalidRequest(f"Stripe cannot be sent an amount in {exc.message}") from exc


def to_stripe(amount_minor: int, currency: str, *, payout: bool = False) -> int:
    """`amount_minor` ISO minor units of `currency` as the integer Stripe's `amount` wants; refuses what Stripe would.

    `payout` marks a transfer of earnings (HUF and TWD must then be whole units).
    """
    code = currency.upper()
    iso = _iso_exponent(code)
    places = stripe_exponent(code)
    shown = f"{format_minor(amount_minor, code)} {code}"
    if places >= iso:
        amount = amount_minor * _scale(places - iso)
    else:
        step = _scale(iso - places)
        if amount_minor % step:
            raise ProviderInvalidRequest(f"Stripe takes {code} amounts in whole units only, not {shown}")
        amount = amount_minor // step
    if code in THREE_DECIMAL and amount % _THREE_DECIMAL_STEP:
        raise ProviderInvalidRequest(f"Stripe takes {code} amounts whose last decimal is 0 only, not {shown}")
    if payout and code in WHOLE_PAYOUTS and amount % _WHOLE:
        raise ProviderInvalidRequest(f"Stripe pays out {code} in whole units only, not {shown}")
    if amount > MAXIMUM:
        largest = from_stripe(MAXIMUM - MAXIMUM % _scale(max(places - iso, 0)), code)
        raise ProviderInvalidRequest(
            f"{shown} is more than Stripe takes at once ({format_minor(largest, code)} {code} at most)"
        )
    return amount


def from_stripe(amount: int, currency: str) -> int:
    """An amount Stripe sent (in its units of `currency`, any case) in payql's ISO minor units."""
    code = str(currency).upper()
    try:
        iso = exponent(code)
        places = stripe_exponent(code)
    except (MoneyError, ProviderInvalidRequest) as exc:
        raise ProviderError(f"Stripe sent an amount in a currency payql does not hold ({code[:3]})") from exc
    value = int(amount)
    if places <= iso:
        return value * _scale(iso - places)
    step = _scale(places - iso)
    if value % step:
        raise ProviderError(f"Stripe sent a {code} amount in fractions payql cannot hold")
    return value // step

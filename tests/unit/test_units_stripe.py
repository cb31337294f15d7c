"""payql's ISO 4217 minor units to Stripe's amounts and back (https://docs.stripe.com/currencies)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payql.money import EXPONENTS, MAX_MINOR
from payql.providers.base import ProviderError, ProviderInvalidRequest
from payql.providers.stripe import units

# The currencies payql accepts that Stripe takes, and those it does not (ISO three-decimal, not Stripe's five).
STRIPE_CURRENCIES = sorted(code for code in EXPONENTS if code not in {"IQD", "LYD"})


def test_stripe_lists_are_the_documented_ones() -> None:
    assert {
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"
    } == units.ZERO_DECIMAL  # fmt: skip
    assert {"BHD", "JOD", "KWD", "OMR", "TND"} == units.THREE_DECIMAL
    assert {"HUF", "TWD"} == units.WHOLE_PAYOUTS
    assert units.MAXIMUM == 99_999_999


def test_every_currency_payql_accepts_has_a_stripe_form_or_a_clear_refusal() -> None:
    for code in STRIPE_CURRENCIES:
        places = units.stripe_exponent(code)
        assert places in {0, 2, 3}
        # the ISO exponent payql holds agrees with Stripe's wherever Stripe follows ISO
        if code in units.ZERO_DECIMAL | units.THREE_DECIMAL:
            assert EXPONENTS[code] == places
    for code in sorted(set(EXPONENTS) - set(STRIPE_CURRENCIES)):
        with pytest.raises(ProviderInvalidRequest, match=code):
            units.stripe_exponent(code)


def test_zero_decimal_amounts_go_as_they_are() -> None:
    assert units.to_stripe(500, "JPY") == 500
    assert units.to_stripe(1, "KRW") == 1
    assert units.from_stripe(500, "jpy") == 500


def test_isk_goes_in_stripes_two_decimal_form_as_whole_kronur() -> None:
    # ISO 4217: ISK has no minor unit, so payql's 1500 is 1500 krónur; Stripe's 100 is one króna.
    assert EXPONENTS["ISK"] == 0
    assert units.to_stripe(1500, "ISK") == 150_000
    assert units.to_stripe(1500, "ISK") % 100 == 0
    assert units.from_stripe(150_000, "isk") == 1500


def test_a_fractional_isk_amount_from_stripe_is_not_rounded() -> None:
    with pytest.raises(ProviderError) as caught:
        units.from_stripe(150_050, "isk")
    assert not isinstance(caught.value, ProviderInvalidRequest)


def test_three_decimal_amounts_must_end_in_zero() -> None:
    assert units.to_stripe(5120, "KWD") == 5120
    with pytest.raises(ProviderInvalidRequest) as caught:
        units.to_stripe(5124, "KWD")
    assert caught.value.code == "INVALID_INPUT"
    assert "5.124 KWD" in caught.value.message


def test_huf_and_twd_payouts_are_whole_units_but_charges_need_not_be() -> None:
    assert units.to_stripe(12345, "HUF") == 12345
    assert units.to_stripe(12300, "TWD", payout=True) == 12300
    for code in ("HUF", "TWD"):
        with pytest.raises(ProviderInvalidRequest, match=f"pays out {code} in whole units"):
            units.to_stripe(12345, code, payout=True)
    assert units.to_stripe(12345, "USD", payout=True) == 12345


def test_an_amount_over_stripes_maximum_is_refused() -> None:
    assert units.to_stripe(99_999_999, "USD") == 99_999_999
    assert units.to_stripe(999_999, "ISK") == 99_999_900
    for amount, code in ((100_000_000, "USD"), (1_000_000, "ISK"), (100_000_000, "JPY"), (MAX_MINOR, "KWD")):
        with pytest.raises(ProviderInvalidRequest, match="more than Stripe takes"):
            units.to_stripe(amount, code)


def test_currencies_stripe_does_not_take_are_refused_before_calling_it() -> None:
    with pytest.raises(ProviderInvalidRequest, match="LYD"):
        units.to_stripe(1000, "LYD")
    with pytest.raises(ProviderInvalidRequest, match="unknown currency"):
        units.to_stripe(1000, "XYZ")
    with pytest.raises(ProviderError):
        units.from_stripe(1000, "xyz")


@st.composite
def sendable(draw: st.DrawFn) -> tuple[int, str, bool]:
    code = draw(st.sampled_from(STRIPE_CURRENCIES))
    payout = draw(st.booleans())
    step = 10 if code in units.THREE_DECIMAL else 1
    if payout and code in units.WHOLE_PAYOUTS:
        step = 100
    top = units.MAXIMUM // (100 if code in units.TWO_DECIMAL_WHOLE else 1)
    return draw(st.integers(min_value=1, max_value=top // step)) * step, code, payout


@given(sendable())
def test_what_stripe_takes_comes_back_unchanged(case: tuple[int, str, bool]) -> None:
    amount, code, payout = case
    sent = units.to_stripe(amount, code, payout=payout)
    assert 0 < sent <= units.MAXIMUM
    assert units.from_stripe(sent, code.lower()) == amount


def _sent(amount: int, code: str, payout: bool) -> int | ProviderInvalidRequest:
    try:
        return units.to_stripe(amount, code, payout=payout)
    except ProviderInvalidRequest as exc:
        return exc


@given(st.sampled_from(STRIPE_CURRENCIES), st.integers(min_value=1, max_value=MAX_MINOR), st.booleans())
def test_any_amount_is_either_sent_exactly_or_refused(code: str, amount: int, payout: bool) -> None:
    sent = _sent(amount, code, payout)
    if isinstance(sent, ProviderInvalidRequest):
        assert sent.code == "INVALID_INPUT"
        assert code in sent.message
        return
    assert sent <= units.MAXIMUM
    assert units.from_stripe(sent, code) == amount
    if code in units.THREE_DECIMAL:
        assert sent % 10 == 0
    if code in units.TWO_DECIMAL_WHOLE or (payout and code in units.WHOLE_PAYOUTS):
        assert sent % 100 == 0

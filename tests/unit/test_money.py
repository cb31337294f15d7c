"""Money: integer minor units, strict parsing of client amounts, formatting and fee splits."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payql.money import (
    EXPONENTS,
    MAX_INTEGER_DIGITS,
    MAX_MINOR,
    Money,
    MoneyError,
    exponent,
    format_minor,
    parse_amount,
    prorate,
    split_fee,
)

CURRENCIES = sorted(EXPONENTS)
TWO_DECIMALS = ["USD", "EUR", "RUB", "CNY", "GBP", "CHF", "CAD", "AUD", "KZT", "UAH"]
TWO_DECIMALS += ["BYN", "INR", "BRL", "TRY", "PLN", "SEK", "NOK", "DKK", "CZK", "HUF"]
REQUIRED_EXPONENTS = {
    **dict.fromkeys(TWO_DECIMALS, 2),
    **dict.fromkeys(["JPY", "KRW", "VND", "CLP", "ISK"], 0),
    **dict.fromkeys(["KWD", "BHD", "OMR", "JOD", "TND"], 3),
}

# Every amount parse_amount accepts is at most MAX_MINOR (10^15) minor units either way.
minor_units = st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR)
positive_minor = st.integers(min_value=1, max_value=MAX_MINOR)
currencies = st.sampled_from(CURRENCIES)
bps = st.integers(min_value=0, max_value=10_000)


# --- exponents -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("currency", "places"), sorted(REQUIRED_EXPONENTS.items()))
def test_exponent_of_required_currencies(currency, places):
    assert EXPONENTS[currency] == places
    assert exponent(currency) == places


def test_every_code_is_three_upper_case_letters_with_a_known_exponent():
    for code, places in EXPONENTS.items():
        assert re.fullmatch("[A-Z]{3}", code), code
        assert places in {0, 2, 3}


@pytest.mark.parametrize("currency", ["XYZ", "usd", "Usd", " USD", "USD ", "US", "USDD", "", "US1"])
def test_exponent_refuses_unknown_or_malformed_codes(currency):
    with pytest.raises(MoneyError, match="unknown currency") as caught:
        exponent(currency)
    assert caught.value.message == f"unknown currency {currency!r}"


def test_exponent_refuses_a_non_string():
    with pytest.raises(MoneyError, match="unknown currency"):
        exponent(840)  # type: ignore[arg-type]


def test_money_error_is_a_value_error_with_a_message():
    error = MoneyError("amount must be positive")
    assert isinstance(error, ValueError)
    assert error.message == "amount must be positive"
    assert str(error) == "amount must be positive"


# --- the Money type ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "fragment"),
    [
        (100, "XYZ", "unknown currency 'XYZ'"),
        (100, "usd", "unknown currency 'usd'"),
        (True, "USD", "must be an int, not bool"),
        ("100", "USD", "must be an int, not str"),
    ],
)
def test_money_refuses_invalid_values(minor, currency, fragment):
    with pytest.raises(MoneyError, match=re.escape(fragment)):
        Money(minor, currency)


def test_money_refuses_fractional_minor_units():
    with pytest.raises(MoneyError, match="must be an int"):
        Money(1 / 2, "USD")  # type: ignore[arg-type]


def test_money_is_immutable_and_compared_by_value():
    price = Money(5000, "USD")
    assert price == Money(5000, "USD")
    assert price != Money(5000, "EUR")
    assert hash(price) == hash(Money(5000, "USD"))
    with pytest.raises(AttributeError):
        price.minor = 1  # type: ignore[misc]


def test_money_arithmetic_in_one_currency():
    assert Money(5000, "USD") + Money(250, "USD") == Money(5250, "USD")
    assert Money(5000, "USD") - Money(5250, "USD") == Money(-250, "USD")
    assert -Money(5000, "USD") == Money(-5000, "USD")
    assert Money.zero("JPY") == Money(0, "JPY")
    assert Money.zero("JPY").is_zero()
    assert not Money(1, "JPY").is_zero()


@pytest.mark.parametrize(("operation", "verb"), [(Money.__add__, "add"), (Money.__sub__, "subtract")])
def test_money_arithmetic_refuses_mixed_currencies(operation, verb):
    with pytest.raises(MoneyError, match=f"cannot {verb} EUR and USD"):
        operation(Money(100, "USD"), Money(100, "EUR"))


def test_money_does_not_add_plain_numbers():
    with pytest.raises(TypeError):
        Money(100, "USD") + 1  # type: ignore[operator]


def test_zero_refuses_unknown_currency():
    with pytest.raises(MoneyError, match="unknown currency 'ABC'"):
        Money.zero("ABC")


# --- formatting ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (5000, "USD", "50.00"),
        (10000, "RUB", "100.00"),
        (1, "USD", "0.01"),
        (0, "USD", "0.00"),
        (-5, "USD", "-0.05"),
        (-12345, "EUR", "-123.45"),
        (1500, "JPY", "1500"),
        (0, "JPY", "0"),
        (-7, "KRW", "-7"),
        (1234, "KWD", "1.234"),
        (5, "KWD", "0.005"),
        (-1000, "BHD", "-1.000"),
        (10**25, "USD", "100000000000000000000000.00"),
    ],
)
def test_format(minor, currency, text):
    assert format_minor(minor, currency) == text
    assert Money(minor, currency).format() == text
    assert str(Money(minor, currency)) == f"{text} {currency}"


def test_format_refuses_bad_input():
    with pytest.raises(MoneyError, match="unknown currency 'XYZ'"):
        format_minor(100, "XYZ")
    with pytest.raises(MoneyError, match="must be an int, not bool"):
        format_minor(minor=True, currency="USD")


# --- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("50.00", "USD", Money(5000, "USD")),
        ("50", "USD", Money(5000, "USD")),
        ("50.5", "USD", Money(5050, "USD")),
        ("0.01", "USD", Money(1, "USD")),
        ("  50.00\n", "USD", Money(5000, "USD")),
        ("50.00", " usd ", Money(5000, "USD")),
        ("100.00", "RUB", Money(10000, "RUB")),
        ("1500", "JPY", Money(1500, "JPY")),
        ("1.234", "KWD", Money(1234, "KWD")),
        ("1.2", "KWD", Money(1200, "KWD")),
        ("0.001", "KWD", Money(1, "KWD")),
        ("007.50", "EUR", Money(750, "EUR")),
        ("1" + "0" * 15, "JPY", Money(MAX_MINOR, "JPY")),
        ("10000000000000.00", "USD", Money(MAX_MINOR, "USD")),
        ("1000000000000.000", "KWD", Money(MAX_MINOR, "KWD")),
    ],
)
def test_parse_amount_accepts(amount, currency, expected):
    assert parse_amount(amount, currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "fragment"),
    [
        # currency
        ("50.00", "XYZ", "unknown currency 'XYZ'"),
        ("50.00", "", "unknown currency ''"),
        ("50.00", "US D", "unknown currency 'US D'"),
        # not a plain decimal number
        ("abc", "USD", "amount 'abc' is not a decimal number"),
        ("", "USD", "amount '' is not a decimal number"),
        ("   ", "USD", "amount '' is not a decimal number"),
        ("+50.00", "USD", "is not a decimal number"),
        ("--5", "USD", "is not a decimal number"),
        ("- 5", "USD", "is not a decimal number"),
        ("1e3", "USD", "amount '1e3' is not a decimal number"),
        ("1E3", "USD", "is not a decimal number"),
        ("1.5e2", "USD", "is not a decimal number"),
        ("1,000.00", "USD", "amount '1,000.00' is not a decimal number"),
        ("1 000", "USD", "is not a decimal number"),
        ("1_000", "USD", "is not a decimal number"),
        ("50,00", "EUR", "is not a decimal number"),
        ("NaN", "USD", "amount 'NaN' is not a decimal number"),
        ("nan", "USD", "is not a decimal number"),
        ("Infinity", "USD", "is not a decimal number"),
        ("-inf", "USD", "is not a decimal number"),
        ("1.", "USD", "amount '1.' is not a decimal number"),
        (".5", "USD", "amount '.5' is not a decimal number"),
        ("-.5", "USD", "is not a decimal number"),
        (".", "USD", "is not a decimal number"),
        ("1.2.3", "USD", "is not a decimal number"),
        ("0x10", "USD", "is not a decimal number"),
        ("$50", "USD", "is not a decimal number"),
        ("50 USD", "USD", "is not a decimal number"),
        ("\u0665\u0660", "USD", "is not a decimal number"),  # Arabic-Indic digits, which int() accepts
        ("\uff15\uff10", "USD", "is not a decimal number"),  # full-width digits
        ("50\n00", "USD", "is not a decimal number"),
        # too many decimals, trailing zeros included
        ("1.234", "USD", "amount '1.234' has more than 2 decimals for USD"),
        ("50.000", "USD", "amount '50.000' has more than 2 decimals for USD"),
        ("50.001", "usd", "has more than 2 decimals for USD"),
        ("1500.0", "JPY", "amount '1500.0' has more than 0 decimals for JPY"),
        ("1.5", "JPY", "has more than 0 decimals for JPY"),
        ("1.2345", "KWD", "amount '1.2345' has more than 3 decimals for KWD"),
        ("1.2340", "KWD", "has more than 3 decimals for KWD"),
        # too big
        ("1" + "0" * MAX_INTEGER_DIGITS, "USD", f"has more than {MAX_INTEGER_DIGITS} integer digits"),
        ("9" * 5000, "JPY", f"has more than {MAX_INTEGER_DIGITS} integer digits"),
        # beyond MAX_MINOR: a BIGINT would overflow (or a SQLite sum turn into a float) further on
        ("9999999999999999999", "USD", "is larger than 10000000000000.00 USD"),
        ("92233720368547758.07", "USD", "is larger than 10000000000000.00 USD"),
        ("10000000000000.01", "USD", "is larger than 10000000000000.00 USD"),
        ("1000000000000001", "JPY", "is larger than 1000000000000000 JPY"),
        ("9" * MAX_INTEGER_DIGITS, "JPY", "is larger than"),
        # sign and zero
        ("0", "USD", "amount must be positive"),
        ("0.00", "USD", "amount must be positive"),
        ("-0", "USD", "amount must be positive"),
        ("-0.00", "USD", "amount must be positive"),
        ("-50.00", "USD", "amount must be positive"),
        ("-0.01", "USD", "amount must be positive"),
        ("-1500", "JPY", "amount must be positive"),
    ],
)
def test_parse_amount_refuses(amount, currency, fragment):
    with pytest.raises(MoneyError, match=re.escape(fragment)) as caught:
        parse_amount(amount, currency)
    assert fragment in caught.value.message


def test_parse_amount_does_not_echo_a_huge_input():
    with pytest.raises(MoneyError) as caught:
        parse_amount("x" * 100_000, "USD")
    assert len(caught.value.message) < 100


@pytest.mark.parametrize(("amount", "currency"), [(50, "USD"), (None, "USD"), ("50.00", None)])
def test_parse_amount_refuses_non_strings(amount, currency):
    with pytest.raises(MoneyError, match="must be a string"):
        parse_amount(amount, currency)


def test_parse_amount_checks_the_currency_first():
    with pytest.raises(MoneyError, match="unknown currency 'XYZ'"):
        parse_amount("abc", "xyz")


@pytest.mark.parametrize(
    ("amount", "flags", "expected"),
    [
        ("0", {"allow_zero": True}, Money(0, "USD")),
        ("0.00", {"allow_zero": True}, Money(0, "USD")),
        ("-0.00", {"allow_zero": True}, Money(0, "USD")),
        ("-0.05", {"allow_negative": True}, Money(-5, "USD")),
        ("-50", {"allow_negative": True}, Money(-5000, "USD")),
        ("0", {"allow_zero": True, "allow_negative": True}, Money(0, "USD")),
        ("-1", {"allow_zero": True, "allow_negative": True}, Money(-100, "USD")),
    ],
)
def test_parse_amount_flags_accept(amount, flags, expected):
    assert parse_amount(amount, "USD", **flags) == expected


@pytest.mark.parametrize(
    ("amount", "flags", "fragment"),
    [
        ("-0.05", {"allow_zero": True}, "amount must not be negative"),
        ("0", {"allow_negative": True}, "amount must not be zero"),
        ("-0", {"allow_negative": True}, "amount must not be zero"),
        ("-1.234", {"allow_negative": True}, "has more than 2 decimals for USD"),
    ],
)
def test_parse_amount_flags_refuse(amount, flags, fragment):
    with pytest.raises(MoneyError, match=re.escape(fragment)):
        parse_amount(amount, "USD", **flags)


# --- parse and format are inverses ---------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["USD", "JPY", "KWD"])
@given(minor=positive_minor)
def test_round_trip_positive_for_each_exponent(currency, minor):
    assert parse_amount(format_minor(minor, currency), currency) == Money(minor, currency)


@given(minor=minor_units, currency=currencies)
def test_round_trip_over_all_currencies(minor, currency):
    parsed = parse_amount(format_minor(minor, currency), currency, allow_zero=True, allow_negative=True)
    assert parsed == Money(minor, currency)
    if minor > 0:
        assert parse_amount(format_minor(minor, currency), currency) == Money(minor, currency)


@pytest.mark.parametrize("currency", ["USD", "JPY", "KWD"])
@given(minor=st.integers(min_value=-MAX_MINOR, max_value=-1))
def test_round_trip_negative_for_each_exponent(currency, minor):
    text = format_minor(minor, currency)
    assert parse_amount(text, currency, allow_negative=True) == Money(minor, currency)
    with pytest.raises(MoneyError, match="amount must be positive"):
        parse_amount(text, currency)


@given(minor=st.integers(min_value=-(10**40), max_value=10**40), currency=currencies)
def test_format_has_exactly_the_exponent_decimals(minor, currency):
    text = format_minor(minor, currency)
    places = EXPONENTS[currency]
    if places == 0:
        assert re.fullmatch(r"-?[0-9]+", text)
    else:
        assert re.fullmatch(rf"-?[0-9]+\.[0-9]{{{places}}}", text)
    assert text.lstrip("-").replace(".", "").lstrip("0") == str(abs(minor)).lstrip("0")
    assert text.startswith("-") == (minor < 0)


@given(minor=positive_minor, currency=currencies)
def test_one_decimal_too_many_is_refused(minor, currency):
    text = format_minor(minor, currency)
    longer = text + ("0" if EXPONENTS[currency] else ".0")
    with pytest.raises(MoneyError, match=f"more than {EXPONENTS[currency]} decimals for {currency}"):
        parse_amount(longer, currency)


@given(
    a=st.integers(min_value=-(10**40), max_value=10**40),
    b=st.integers(min_value=-(10**40), max_value=10**40),
    currency=currencies,
)
def test_arithmetic_matches_integers(a, b, currency):
    assert Money(a, currency) + Money(b, currency) == Money(a + b, currency)
    assert Money(a, currency) - Money(b, currency) == Money(a - b, currency)
    negated = -Money(a, currency)
    assert negated == Money(-a, currency)
    assert -negated == Money(a, currency)


# --- fee split ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "platform", "tax", "expected"),
    [
        (10000, 500, 0, (500, 0, 9500)),
        (10000, 1000, 600, (1000, 540, 8460)),
        (0, 1000, 600, (0, 0, 0)),
        (1, 500, 600, (0, 0, 1)),
        (10000, 0, 0, (0, 0, 10000)),
        (10000, 10000, 600, (10000, 0, 0)),
        (10000, 0, 10000, (0, 10000, 0)),
        (999, 333, 0, (33, 0, 966)),
    ],
)
def test_split_fee(amount, platform, tax, expected):
    assert split_fee(amount, platform, tax) == expected


@pytest.mark.parametrize(
    ("amount", "platform", "tax", "fragment"),
    [
        (-1, 500, 0, "amount must be a non-negative int"),
        (True, 500, 0, "amount must be a non-negative int"),
        (10000, -1, 0, "platform_bps must be an int from 0 to 10000"),
        (10000, 10001, 0, "platform_bps must be an int from 0 to 10000"),
        (10000, 0, -1, "tax_bps must be an int from 0 to 10000"),
        (10000, 0, 10001, "tax_bps must be an int from 0 to 10000"),
        (10000, False, 0, "platform_bps must be an int"),
    ],
)
def test_split_fee_refuses(amount, platform, tax, fragment):
    with pytest.raises(MoneyError, match=re.escape(fragment)):
        split_fee(amount, platform, tax)


@given(amount=st.integers(min_value=0, max_value=10**18), platform=bps, tax=bps)
def test_split_fee_properties(amount, platform, tax):
    fee, tax_part, payee = split_fee(amount, platform, tax)
    assert fee + tax_part + payee == amount
    assert min(fee, tax_part, payee) >= 0
    assert fee == amount * platform // 10_000
    assert tax_part == (amount - fee) * tax // 10_000
    # floor: the fee is the largest whole number of minor units not above the exact share
    assert fee * 10_000 <= amount * platform < (fee + 1) * 10_000


# --- proration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "whole", "value", "expected"),
    [
        (5000, 10000, 1000, 500),
        (10000, 10000, 1000, 1000),
        (0, 10000, 1000, 0),
        (1, 3, 100, 33),
        (2, 3, 100, 66),
        (3333, 10000, 500, 166),
    ],
)
def test_prorate(part, whole, value, expected):
    assert prorate(part, whole, value) == expected


@pytest.mark.parametrize(
    ("part", "whole", "value", "fragment"),
    [
        (1, 0, 100, "whole must be positive"),
        (-1, 10, 100, "part must be a non-negative int"),
        (1, -10, 100, "whole must be a non-negative int"),
        (1, 10, -100, "value must be a non-negative int"),
        (True, 10, 100, "part must be a non-negative int"),
    ],
)
def test_prorate_refuses(part, whole, value, fragment):
    with pytest.raises(MoneyError, match=re.escape(fragment)):
        prorate(part, whole, value)


@given(
    whole=st.integers(min_value=1, max_value=10**15),
    value=st.integers(min_value=0, max_value=10**15),
    data=st.data(),
)
def test_prorate_is_the_floor_and_partial_refunds_never_overshoot(whole, value, data):
    part = data.draw(st.integers(min_value=0, max_value=whole))
    share = prorate(part, whole, value)
    assert share * whole <= part * value < (share + 1) * whole
    assert 0 <= share <= value
    assert prorate(whole, whole, value) == value
    rest = data.draw(st.integers(min_value=0, max_value=whole - part))
    assert prorate(part, whole, value) + prorate(rest, whole, value) <= value


@given(minor=st.integers(min_value=MAX_MINOR + 1, max_value=10**MAX_INTEGER_DIGITS - 1), currency=currencies)
def test_every_amount_beyond_the_maximum_is_refused_whatever_its_sign(minor, currency):
    for text in (format_minor(minor, currency), format_minor(-minor, currency)):
        with pytest.raises(MoneyError, match="is larger than"):
            parse_amount(text, currency, allow_negative=True)

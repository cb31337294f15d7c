"""payql's provider message catalogue, and the adapters' mappings that must use it instead of the provider's text.

(How each SDK's exceptions are translated is tested end to end in tests/e2e/test_provider_messages.py: the SDKs are
imported only by their adapters.)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from graphql import GraphQLError

from payql.models.enums import PaymentStatus
from payql.providers import messages
from payql.providers.base import PaymentDeclined, ProviderInvalidRequest
from payql.providers.stripe import mapping
from payql.providers.yookassa.adapter import map_payment
from payql.schema.errors import CodedErrors

PROSE = "Unexpected description ZEBRA-QUOKKA-7731"
PROVIDER_NAMES = ("stripe", "yookassa", "юkassa")


def test_the_catalogue_is_payqls_own_words() -> None:
    for code, text in messages.CATALOGUE.items():
        assert text, code
        assert text[0].isupper(), code
        assert not any(name in text.lower() for name in PROVIDER_NAMES), code
    assert messages.message("insufficient_funds", messages.DECLINED) == "The card has insufficient funds"
    assert messages.message("a_code_nobody_listed", messages.REFUSED) == messages.REFUSED
    assert messages.message(None, messages.FAILED) == messages.FAILED


def test_lost_and_stolen_cards_are_only_told_declined() -> None:
    for code in ("lost_card", "stolen_card", "fraudulent", "fraud_suspected"):
        assert messages.message(code, messages.DECLINED) == messages.DECLINED


def test_a_declined_yookassa_payment_is_described_by_the_catalogue() -> None:
    payment = map_payment(
        {
            "id": "2d9f-000",
            "status": "canceled",
            "paid": False,
            "amount": {"value": "100.00", "currency": "RUB"},
            "cancellation_details": {"party": "payment_network", "reason": "insufficient_funds"},
        }
    )
    assert payment.status is PaymentStatus.FAILED
    assert (payment.failure_code, payment.failure_message) == ("insufficient_funds", "The card has insufficient funds")


def test_a_declined_stripe_intent_is_described_by_the_catalogue_not_by_stripes_message() -> None:
    intent: dict[str, Any] = {
        "id": "pi_1",
        "status": "requires_payment_method",
        "amount": 1000,
        "currency": "usd",
        "last_payment_error": {"code": "card_declined", "decline_code": "expired_card", "message": PROSE},
    }
    payment = mapping.payment_intent(intent)
    assert (payment.failure_code, payment.failure_message) == ("expired_card", "The card has expired")
    intent["last_payment_error"] = {"code": "card_declined", "decline_code": "some_new_code", "message": PROSE}
    assert mapping.payment_intent(intent).failure_message == messages.DECLINED


def coded(error: Exception) -> dict[str, Any]:
    extension = CodedErrors()
    extension.execution_context = SimpleNamespace(context=SimpleNamespace(request_id="req-1"))  # type: ignore[assignment]
    (processed,) = extension._process_errors([GraphQLError(str(error), original_error=error)])
    return {"message": processed.message, **(processed.extensions or {})}


def test_graphql_errors_carry_the_providers_code_as_provider_code() -> None:
    assert coded(ProviderInvalidRequest(messages.REFUSED, provider_code="parameter_unknown")) == {
        "message": messages.REFUSED,
        "code": "INVALID_INPUT",
        "providerCode": "parameter_unknown",
    }
    assert coded(PaymentDeclined(messages.DECLINED)) == {"message": messages.DECLINED, "code": "PAYMENT_DECLINED"}


def test_a_providers_code_is_kept_to_what_failure_code_holds() -> None:
    assert ProviderInvalidRequest(messages.REFUSED, provider_code="x" * 500).provider_code == "x" * 64
    assert ProviderInvalidRequest(messages.REFUSED, provider_code="").provider_code is None

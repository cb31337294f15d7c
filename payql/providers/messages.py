"""payql's own words for what a provider answers (CONTRACT.md, "No provider text reaches a client").

A provider's message is written for its own dashboard, may change any day, and sometimes echoes our request back
("Unexpected description…"); it never reaches a client. An adapter maps an SDK exception or a failed payment to a
`ProviderError` whose message comes from here and whose `provider_code` is the provider's own code (shown to clients
as `failureCode` on a payment and `extensions.providerCode` / `UserError.providerCode` on errors). Codes not listed
get the message of their kind.
"""

from __future__ import annotations

from typing import Final

# Kinds of answer: the message when the provider's code is not in the catalogue below.
DECLINED: Final = "The card was declined"
REFUSED: Final = "The payment provider refused the request"
FAILED: Final = "The payment provider could not complete the request"
UNAVAILABLE: Final = "The payment provider could not be reached; try again later"
RATE_LIMITED: Final = "The payment provider is rate limiting requests; try again later"
CREDENTIALS: Final = "The payment provider refused payql's credentials; the operator must check the configuration"
PAYMENT_CANCELED: Final = "The payment was canceled"

# Provider codes (Stripe's `code`/`decline_code`, YooKassa's error `code` and `cancellation_details.reason`) with a
# message of their own. Lost, stolen and fraud-suspected cards are told only that the card was declined.
CATALOGUE: Final[dict[str, str]] = {
    # card declines (Stripe decline codes, YooKassa cancellation reasons)
    "card_declined": DECLINED,
    "generic_decline": DECLINED,
    "general_decline": DECLINED,
    "do_not_honor": DECLINED,
    "lost_card": DECLINED,
    "stolen_card": DECLINED,
    "fraudulent": DECLINED,
    "fraud_suspected": DECLINED,
    "insufficient_funds": "The card has insufficient funds",
    "expired_card": "The card has expired",
    "card_expired": "The card has expired",
    "incorrect_cvc": "The card's security code is incorrect",
    "invalid_csc": "The card's security code is incorrect",
    "incorrect_number": "The card number is incorrect",
    "invalid_card_number": "The card number is incorrect",
    "processing_error": "The card could not be processed; try again",
    "authentication_required": "The card's issuer requires authentication",
    "3d_secure_failed": "The card's authentication (3-D Secure) failed",
    "call_issuer": "The card was declined; the payer should contact their bank",
    "issuer_unavailable": "The card's issuer could not be reached; try again later",
    "country_forbidden": "Cards issued in this country are not accepted",
    "payment_method_limit_exceeded": "The payment method's limit is exceeded",
    "payment_method_restricted": "The payment method is restricted",
    "permission_revoked": "The payer revoked the permission to charge this payment method",
    "identification_required": "The payer's wallet must be identified for this payment",
    "internal_timeout": "The payment provider did not finish in time; try again",
    # a payment or hold that ended (YooKassa cancellation reasons)
    "expired_on_confirmation": "The payer did not confirm the payment in time",
    "expired_on_capture": "The hold expired before it was captured",
    "canceled_by_merchant": PAYMENT_CANCELED,
    # refused requests
    "amount_too_small": "The amount is below the payment provider's minimum for this currency",
    "amount_too_large": "The amount is above what the payment provider takes",
    "invalid_charge_amount_no_decimal_compatible": "The payment provider takes this currency in whole units only",
    "charge_already_refunded": "The payment is already refunded in full at the payment provider",
    "charge_not_refundable": "The payment cannot be refunded at the payment provider",
    "charge_disputed": "The payment is disputed (charged back): it cannot be refunded",
    "payment_intent_unexpected_state": "The payment is not in a state that allows this",
    "resource_missing": "The payment provider does not know this object",
    "not_found": "The payment provider does not know this object",
    "idempotency_error": "The request conflicts with an earlier one with the same key",
    "account_invalid": "The payout account is not usable",
    "balance_insufficient": "The platform's balance at the payment provider is too low",
    "insufficient_capabilities_for_transfer": "The payout account cannot receive transfers",
    "rate_limit": RATE_LIMITED,
    "too_many_requests": RATE_LIMITED,
    "unauthorized": CREDENTIALS,
    "invalid_credentials": CREDENTIALS,
    "forbidden": CREDENTIALS,
}


def message(code: str | None, default: str) -> str:
    """payql's message for a provider's `code`, or `default` (the message of its kind) for a code not listed."""
    if code is None:
        return default
    return CATALOGUE.get(code, default)

"""Stripe behind the `PaymentProvider` protocol (the only package that imports `stripe`)."""

from payql.providers.stripe.adapter import StripeProvider

__all__ = ["StripeProvider"]

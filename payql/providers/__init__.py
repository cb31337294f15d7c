"""Payment providers behind one protocol (`base.PaymentProvider`); `build_providers` picks real or mock."""

from __future__ import annotations

import logging

from payql.db import Database
from payql.models.enums import ProviderName
from payql.providers.base import PaymentProvider
from payql.providers.mock import MockProvider
from payql.settings import Settings

logger = logging.getLogger("payql.providers")


def build_providers(settings: Settings, db: Database) -> dict[ProviderName, PaymentProvider]:
    """A provider without keys runs in mock mode (and says so in the log)."""
    providers: dict[ProviderName, PaymentProvider] = {}
    if settings.stripe_secret_key is not None:
        from payql.providers.stripe import StripeProvider  # noqa: PLC0415 - the SDK loads only when used

        secret = settings.stripe_webhook_secret
        providers[ProviderName.STRIPE] = StripeProvider(
            settings.stripe_secret_key.get_secret_value(),
            api_base=settings.stripe_api_base,
            webhook_secret=secret.get_secret_value() if secret else None,
            timeout_ms=settings.provider_timeout_ms,
        )
    if settings.yookassa_shop_id is not None and settings.yookassa_secret_key is not None:
        from payql.providers.yookassa import YooKassaProvider  # noqa: PLC0415 - the SDK loads only when used

        payout_secret = settings.yookassa_payout_secret_key
        if settings.yookassa_payout_agent_id is None or payout_secret is None:
            logger.warning("MOCK MODE: YOOKASSA_PAYOUT_AGENT_ID/YOOKASSA_PAYOUT_SECRET_KEY unset; payouts simulated")
        providers[ProviderName.YOOKASSA] = YooKassaProvider(
            settings.yookassa_shop_id,
            settings.yookassa_secret_key.get_secret_value(),
            api_url=settings.yookassa_api_url,
            timeout_ms=settings.provider_timeout_ms,
            trusted_ips=settings.yookassa_trusted_ips,
            trusted_proxies=settings.trusted_proxies,
            payout_agent_id=settings.yookassa_payout_agent_id,
            payout_secret_key=payout_secret.get_secret_value() if payout_secret else None,
        )
    for name in ProviderName:
        if name not in providers:
            logger.warning("MOCK MODE: %s has no keys; payments through it are simulated", name.value)
            providers[name] = MockProvider(name, db, checkout_base=settings.base_url)
    return providers

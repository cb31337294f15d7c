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
    for name, mock in ((ProviderName.STRIPE, settings.stripe_mock), (ProviderName.YOOKASSA, settings.yookassa_mock)):
        if not mock:
            raise RuntimeError(f"{name.value} keys are set, but this build has only the mock {name.value} provider")
        logger.warning("MOCK MODE: %s has no keys; payments through it are simulated", name.value)
        providers[name] = MockProvider(name, db)
    return providers

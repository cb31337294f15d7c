"""The one composition root (DESIGN.md §1): `bootstrap(settings)` chooses the concrete adapters (the database, real
or mock providers) and wires every use case to them. The app (`create_app`), every CLI command and the tests build
through it; tests pass their own database or providers. `Services.close()` closes the providers' HTTP clients
and returns the engine's pooled connections (an engine stays usable after that, so a test's own database does
too)."""

from __future__ import annotations

from payql import faults, live
from payql.db import Database
from payql.models.enums import ProviderName
from payql.providers import build_providers
from payql.providers.base import PaymentProvider
from payql.services import Services, build_services
from payql.settings import Settings


def bootstrap(
    settings: Settings,
    *,
    db: Database | None = None,
    providers: dict[ProviderName, PaymentProvider] | None = None,
) -> Services:
    faults.arm(settings)  # crash points (PAYQL_ENV=test only) hold in the server and in every command alike
    live.install_bus(settings)  # every commit of a payment or enroll reaches the subscribers (Redis or not)
    database = db or Database(
        settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    chosen = providers or build_providers(settings, database)
    services = build_services(settings, database, chosen)
    services.on_close.append(database.dispose)
    services.on_close.extend(provider.close for provider in chosen.values())
    return services

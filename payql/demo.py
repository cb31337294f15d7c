"""`payql demo`: sample users, an enroll and paid payments in mock mode, and tokens to try them with."""

from __future__ import annotations

from payql.auth import Principal, issue_token
from payql.bootstrap import bootstrap
from payql.db import Database
from payql.migrate import upgrade
from payql.models.enums import CaptureMethod, ProviderName
from payql.money import parse_amount
from payql.providers.base import PaymentProvider
from payql.providers.mock import MockProvider
from payql.settings import Settings

CLIENT = Principal("demo-client", frozenset())
PROVIDER = Principal("demo-provider", frozenset({"provider"}))
ADMIN = Principal("demo-admin", frozenset({"admin"}))


def run_demo(settings: Settings) -> str:
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    providers: dict[ProviderName, PaymentProvider] = {
        name: MockProvider(name, db, checkout_base=settings.base_url) for name in ProviderName
    }
    services = bootstrap(settings, db=db, providers=providers)  # the demo is mock mode, whatever the keys say
    try:
        services.catalogue.sync(db)
        for principal in (CLIENT, PROVIDER, ADMIN):
            services.users.ensure(principal)

        enroll = services.enrolls.create_enroll(
            CLIENT, PROVIDER.user_id, "Guitar lesson", parse_amount("100.00", "USD")
        )
        intent = services.payments.create_intent(
            CLIENT,
            enroll_id=enroll.id,
            package_code=None,
            provider=ProviderName.STRIPE,
            capture_method=CaptureMethod.AUTOMATIC,
            return_url=None,
            idempotency_key=None,
        )
        paid = services.payments.confirm(CLIENT, intent.payment.id, "4242424242424242").payment

        held_enroll = services.enrolls.create_enroll(
            CLIENT, PROVIDER.user_id, "Manicure", parse_amount("100.00", "RUB")
        )
        held = services.payments.create_intent(
            CLIENT,
            enroll_id=held_enroll.id,
            package_code=None,
            provider=ProviderName.YOOKASSA,
            capture_method=CaptureMethod.MANUAL,
            return_url=None,
            idempotency_key=None,
        )
        held_payment = services.payments.confirm(CLIENT, held.payment.id, None).payment

        package = services.payments.create_intent(
            CLIENT,
            enroll_id=None,
            package_code="standard",
            provider=ProviderName.STRIPE,
            capture_method=None,
            return_url=None,
            idempotency_key=None,
        )
        package_payment = services.payments.confirm(CLIENT, package.payment.id, None).payment
    finally:
        services.close()

    def token(principal: Principal) -> str:
        return issue_token(settings, principal.user_id, roles=principal.roles, ttl_seconds=settings.jwt_max_lifetime)

    return "\n".join(
        [
            "MOCK MODE demo data created.",
            f"  enroll {enroll.id} (100.00 USD via STRIPE): payment {paid.id} is {paid.status.value}",
            (
                f"  enroll {held_enroll.id} (100.00 RUB via YOOKASSA): payment {held_payment.id} is "
                f"{held_payment.status.value}"
            ),
            f"  package 'standard': payment {package_payment.id} is {package_payment.status.value}",
            "",
            f"Tokens (valid {settings.jwt_max_lifetime} s) for the Authorization header: Bearer <token>",
            f"  client   (demo-client):   {token(CLIENT)}",
            f"  provider (demo-provider): {token(PROVIDER)}",
            f"  admin    (demo-admin):    {token(ADMIN)}",
            "",
            "Try in GraphiQL at /graphql, e.g. with the provider's token:",
            '  mutation { refund(input: {paymentId: "' + paid.id + '", amount: {amount: "25.00", currency: "USD"}}) '
            "{ refund { id status amount { amount currency } } payment { status refundedAmount { amount } } "
            "errors { code message } } }",
        ]
    )

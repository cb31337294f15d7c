"""`balances` (the caller's) and `platformBalances` (admin)."""

from __future__ import annotations

import strawberry

from payql.models import utcnow
from payql.resolvers.common import GQLInfo, caller
from payql.schema.types import AccountBalance, Balances, CreditLot, Money, PlatformBalance
from payql.services import balances as books
from payql.services import credits
from payql.services.errors import Forbidden
from payql.services.queries import CURRENCIES_CAP, LIST_CAP


def balances(info: GQLInfo) -> Balances:
    return balances_of(info, caller(info).user_id)


def balances_of(info: GQLInfo, user_id: str) -> Balances:
    session = info.context.session
    accounts = books.user_accounts(session, user_id)
    now = utcnow()
    lots = credits.unexpired_lots(session, user_id, LIST_CAP, now)
    return Balances(
        id=strawberry.ID(f"balances:{user_id}"),
        credits=credits.unexpired(session, user_id, now),
        _credit_lots=[
            CreditLot(
                id=strawberry.ID(lot.id),
                credits=lot.credits,
                remaining=lot.remaining,
                expires_at=lot.expires_at,
                payment_id=strawberry.ID(lot.payment_id),
            )
            for lot in lots
        ],
        accounts=[
            AccountBalance(
                id=strawberry.ID(f"balance:{user_id}:{account.currency}"),
                currency=account.currency,
                available=Money.of(account.available, account.currency),
                pending=Money.of(account.pending, account.currency),
                paid_out=Money.of(account.paid_out, account.currency),
            )
            for account in accounts[:CURRENCIES_CAP]
        ],
    )


def platform_balances(info: GQLInfo) -> list[PlatformBalance]:
    principal = caller(info)
    if not principal.is_admin:
        raise Forbidden("only an admin can read the platform's balances")
    return [
        PlatformBalance(
            currency=row.currency,
            revenue=Money.of(row.revenue, row.currency),
            tax=Money.of(row.tax, row.currency),
            provider_payable=Money.of(row.provider_payable, row.currency),
            escrow=Money.of(row.escrow, row.currency),
            payouts_in_flight=Money.of(row.payouts_in_flight, row.currency),
            provider_cash=Money.of(row.provider_cash, row.currency),
            provider_fees=Money.of(row.provider_fees, row.currency),
        )
        for row in books.platform_balances(info.context.session)[:CURRENCIES_CAP]
    ]

"""`balances` (the caller's) and `platformBalances` (admin)."""

from __future__ import annotations

from payql.resolvers.common import GQLInfo, caller
from payql.schema.types import AccountBalance, Balances, Money, PlatformBalance
from payql.services import balances as books
from payql.services.errors import Forbidden


def balances(info: GQLInfo) -> Balances:
    principal = caller(info)
    accounts = books.user_accounts(info.context.session, principal.user_id)
    return Balances(
        credits=0,
        credit_lots=[],
        accounts=[
            AccountBalance(
                currency=account.currency,
                available=Money.of(account.available, account.currency),
                pending=Money.of(account.pending, account.currency),
                paid_out=Money.of(account.paid_out, account.currency),
            )
            for account in accounts
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
        )
        for row in books.platform_balances(info.context.session)
    ]

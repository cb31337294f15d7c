from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from payql.db import Database
from payql.models import CreditPackage
from payql.money import Money, exponent, parse_amount
from payql.settings import PackageConfig


@dataclass(frozen=True, slots=True)
class Package:
    code: str
    name: str
    credits: int
    price: Money

    @property
    def unit_price(self) -> str:
        """The price of one credit in major units, with two decimals more than the currency has, rounded down.

        CNY 100.00 for 1100 credits → "0.0909". Integer arithmetic only.
        """
        decimals = exponent(self.price.currency) + 2
        scaled = self.price.minor * 100 // self.credits  # minor units x 100 = 10^decimals per major unit
        whole, fraction = divmod(scaled, 10**decimals)
        return f"{whole}.{fraction:0{decimals}d}"


class Catalogue:
    """The credit packages, from `CREDIT_PACKAGES`; kept in memory and mirrored into `credit_packages`."""

    def __init__(self, packages: list[PackageConfig]) -> None:
        self._packages = {
            config.code: Package(
                code=config.code,
                name=config.name,
                credits=config.credits,
                price=parse_amount(config.price, config.currency),
            )
            for config in packages
        }

    def all(self) -> list[Package]:
        return list(self._packages.values())

    def get(self, code: str) -> Package | None:
        return self._packages.get(code)

    def sync(self, db: Database) -> None:
        """Write the catalogue to the table (payments reference it); packages no longer configured go inactive.

        Replicas and workers start together and each syncs: when another one inserted a package first, the insert
        here fails on the key, and the second attempt finds the row and updates it.
        """
        try:
            self._sync(db)
        except IntegrityError:
            self._sync(db)  # another process inserted first: now the rows are there

    def _sync(self, db: Database) -> None:
        with db.uow() as uow:
            rows = {row.code: row for row in uow.session.scalars(select(CreditPackage))}
            for package in self._packages.values():
                row = rows.pop(package.code, None)
                if row is None:
                    row = CreditPackage(code=package.code)
                    uow.session.add(row)
                row.name = package.name
                row.credits = package.credits
                row.price_minor = package.price.minor
                row.currency = package.price.currency
                row.active = True
            for stale in rows.values():
                stale.active = False
            uow.commit()

"""Per-request DataLoaders: a page's nested lookups (enrolls, refunds, an enroll's payment) batched into one
statement each. They live beside the schema (built per request by the context, never module-level); the statements
they run are the read side's (services/queries.py), on the request's Core connection."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from payql.services import queries
from payql.services.catalogue import Catalogue
from payql.services.queries import Record

T = TypeVar("T")
K = TypeVar("K")


class BatchLoader(Generic[K, T]):
    """A synchronous DataLoader for one request: keys are registered as a list resolves, then the first `load`
    fetches every registered key in one query. GraphQL's synchronous execution completes list items one by one,
    so registering the page's keys up front is what turns N lookups into one."""

    def __init__(self, fetch: Callable[[list[K]], dict[K, T]], default: Callable[[], T]) -> None:
        self._fetch = fetch
        self._default = default
        self._cache: dict[K, T] = {}
        self._wanted: set[K] = set()

    def want(self, keys: Iterable[K | None]) -> None:
        cache = self._cache
        self._wanted.update({key for key in keys if key is not None and key not in cache})

    def load(self, key: K) -> T:
        if key not in self._cache:
            self._wanted.add(key)
            batch = sorted(self._wanted, key=str)
            found = self._fetch(batch)
            for wanted in batch:
                self._cache[wanted] = found[wanted] if wanted in found else self._default()
            self._wanted.clear()
        return self._cache[key]


def _none() -> None:
    return None


class Loaders:
    """Per-request loaders (never module-level: they cache for the life of the request only).

    Each loader's fetch is a `partial` of its query, not a bound method of this object: nothing here refers back
    to the `Loaders`, so a request's loaders and the rows they cached are freed by reference counting when the
    request ends, not left to the cyclic garbage collector."""

    def __init__(self, connection: Connection, catalogue: Catalogue, lean: frozenset[str] = frozenset()) -> None:
        self.catalogue = catalogue
        # the operation reads no more of these types' rows than their lean columns (schema/limits.py's `lean_types`)
        lean_enrolls, lean_refunds = "Enroll" in lean, "Refund" in lean
        self.enroll: BatchLoader[str, Record | None] = BatchLoader(
            partial(queries.enrolls_by_id, connection, lean=lean_enrolls), _none
        )
        self.refunds: BatchLoader[str, list[Record]] = BatchLoader(
            partial(queries.refunds_by_payment, connection, lean=lean_refunds), list
        )
        self.enroll_payment: BatchLoader[str, Record | None] = BatchLoader(
            partial(queries.payments_by_enroll, connection), _none
        )
        self.disputes: BatchLoader[str, list[Record]] = BatchLoader(
            partial(queries.disputes_by_payment, connection), list
        )

    def want_payments(self, payments: Sequence[Any]) -> None:
        ids = [payment.id for payment in payments]  # lists, not generators: a page is read once per loader
        self.enroll.want([payment.enroll_id for payment in payments])
        self.refunds.want(ids)
        self.disputes.want(ids)

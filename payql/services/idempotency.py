"""Idempotency keys for mutations that move money (CONTRACT.md, "Idempotency after a failure").

(user, operation, key) → the hash of the normalised input and the stored outcome. The same key with the same
input replays the first definitive outcome (a success or an expected error) without doing anything again; the same
key with another input is `CONFLICT`. After a transient provider failure the record stays `IN_PROGRESS` and a
retry runs the operation again with the same `seed`, from which the operation derives the same ids and the same
provider-side keys: the provider never sees two operations.

Concurrent first uses of one key run it once: the unique constraint lets one request create the record, which
holds a lease (`locked_until`) while it executes; the others wait for its outcome and replay it. A transient
failure releases the lease at once, so a retry resumes without waiting; an execution whose process died loses the
lease when it runs out (longer than any execution's provider calls), and the next retry takes the key over.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from payql.db import Database
from payql.models import IdempotencyRecord, new_id, utcnow
from payql.providers.base import ProviderError
from payql.services import text
from payql.services.errors import Conflict, DomainError, InvalidInput

R = TypeVar("R")
MAX_KEY_LENGTH = text.IDEMPOTENCY_KEY
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
DEFAULT_LEASE = timedelta(seconds=30)
POLL_SECONDS = 0.02


def request_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def derived_id(prefix: str, seed: str) -> str:
    """A stable id for the object an idempotent operation creates, still ordered by the seed's time."""
    stamp = seed.split("_", 1)[1][:14]
    return f"{prefix}_{stamp}{hashlib.sha256(seed.encode()).hexdigest()[:10]}"


class StoredError(DomainError):
    """A definitive error replayed from an idempotency record."""


class IdempotencyService:
    def __init__(self, db: Database, lease: timedelta = DEFAULT_LEASE) -> None:
        self._db = db
        self._lease = lease

    def run(
        self,
        *,
        user_id: str,
        operation: str,
        key: str | None,
        request: dict[str, Any],
        execute: Callable[[str], R],
        encode: Callable[[R], dict[str, Any]],
        decode: Callable[[dict[str, Any]], R],
    ) -> R:
        """Run `execute(seed)` at most once to a definitive outcome per (user, operation, key)."""
        if key is None:
            return execute(new_id("idem"))
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise InvalidInput(f"idempotencyKey must be 1 to {MAX_KEY_LENGTH} characters", field="idempotencyKey")
        digest = request_hash(request)
        record = self._claim(user_id, operation, key, digest)
        if record.state == COMPLETED and record.result is not None:
            stored = json.loads(record.result)
            if "error" in stored:
                error = stored["error"]
                raise StoredError(error["message"], field=error.get("field"), code=error["code"])
            return decode(stored)
        try:
            result = execute(record.id)
        except ProviderError as exc:
            if exc.transient:
                self._release(record.id)  # stays IN_PROGRESS: a retry resumes with the same seed, without waiting
                raise
            self._complete(record.id, {"error": {"code": exc.code, "message": exc.message, "field": None}})
            raise
        except DomainError as exc:
            self._complete(record.id, {"error": {"code": exc.code, "message": exc.message, "field": exc.field}})
            raise
        except BaseException:
            self._release(record.id)
            raise
        self._complete(record.id, encode(result))
        return result

    def _claim(self, user_id: str, operation: str, key: str, digest: str) -> IdempotencyRecord:
        """The key's record, either COMPLETED (to replay) or IN_PROGRESS and leased to this execution; while
        another execution holds it, wait for its outcome."""
        deadline = time.monotonic() + self._lease.total_seconds() + 5
        query = select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id,
            IdempotencyRecord.operation == operation,
            IdempotencyRecord.key == key,
        )
        while True:
            with self._db.read() as session:
                record = session.scalars(query).one_or_none()
            now = utcnow()
            if record is None:
                record = self._create(user_id, operation, key, digest, now)
                if record is not None:
                    return record
                continue  # a concurrent first use created it: look again
            if record.request_hash != digest:
                raise Conflict("idempotencyKey was already used with a different input", field="idempotencyKey")
            if record.state == COMPLETED:
                return record
            if (record.locked_until is None or record.locked_until <= now) and self._take(record.id, now):
                return record  # free (released after a transient failure, or its owner died): ours now
            if time.monotonic() > deadline:  # pragma: no cover - only if an owner outlives its own lease
                raise Conflict("idempotencyKey is being used by a concurrent request", field="idempotencyKey")
            time.sleep(POLL_SECONDS)  # another execution holds it: wait for its outcome

    def _create(self, user_id: str, operation: str, key: str, digest: str, now: datetime) -> IdempotencyRecord | None:
        with self._db.uow() as uow:
            record = IdempotencyRecord(
                id=new_id("idem"),
                user_id=user_id,
                operation=operation,
                key=key,
                request_hash=digest,
                locked_until=now + self._lease,
            )
            uow.session.add(record)
            try:
                uow.commit()
            except IntegrityError:
                return None
            return record

    def _take(self, record_id: str, now: datetime) -> bool:
        """Lease a free IN_PROGRESS record; one of several concurrent takers wins (the row's write is atomic)."""
        with self._db.uow() as uow:
            taken = uow.session.execute(
                update(IdempotencyRecord)
                .where(
                    IdempotencyRecord.id == record_id,
                    IdempotencyRecord.state == IN_PROGRESS,
                    or_(IdempotencyRecord.locked_until.is_(None), IdempotencyRecord.locked_until <= now),
                )
                .values(locked_until=now + self._lease)
            )
            uow.commit()
            return bool(getattr(taken, "rowcount", 0) == 1)

    def _release(self, record_id: str) -> None:
        with self._db.uow() as uow:
            uow.session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.id == record_id, IdempotencyRecord.state == IN_PROGRESS)
                .values(locked_until=None)
            )
            uow.commit()

    def purge(self, older_than: timedelta, now: datetime | None = None) -> int:
        """Forget keys older than `older_than` (24 h: what Stripe keeps its own keys for); returns how many."""
        cutoff = (now or utcnow()) - older_than
        with self._db.uow() as uow:
            result = uow.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
            uow.commit()
            return int(getattr(result, "rowcount", 0) or 0)

    def _complete(self, record_id: str, outcome: dict[str, Any]) -> None:
        with self._db.uow() as uow:
            record = uow.session.get(IdempotencyRecord, record_id)
            if record is not None and record.state != COMPLETED:
                record.state = COMPLETED
                record.result = json.dumps(outcome)
                record.locked_until = None
                uow.commit()

"""Idempotency keys for mutations that move money (CONTRACT.md, "Idempotency after a failure").

(user, operation, key) → the hash of the normalised input and the stored outcome. The same key with the same
input replays the first definitive outcome (a success or an expected error) without doing anything again; the same
key with another input is `CONFLICT`. After a transient provider failure the record stays `IN_PROGRESS` and a
retry runs the operation again with the same `seed`, from which the operation derives the same ids and the same
provider-side keys: the provider never sees two operations.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from payql.db import Database
from payql.models import IdempotencyRecord, new_id, utcnow
from payql.providers.base import ProviderError
from payql.services.errors import Conflict, DomainError, InvalidInput

R = TypeVar("R")
MAX_KEY_LENGTH = 255
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"


def request_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def derived_id(prefix: str, seed: str) -> str:
    """A stable id for the object an idempotent operation creates, still ordered by the seed's time."""
    stamp = seed.split("_", 1)[1][:14]
    return f"{prefix}_{stamp}{hashlib.sha256(seed.encode()).hexdigest()[:10]}"


class StoredError(DomainError):
    """A definitive error replayed from an idempotency record."""


class IdempotencyService:
    def __init__(self, db: Database) -> None:
        self._db = db

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
                raise  # the record stays IN_PROGRESS: a retry resumes with the same seed
            self._complete(record.id, {"error": {"code": exc.code, "message": exc.message, "field": None}})
            raise
        except DomainError as exc:
            self._complete(record.id, {"error": {"code": exc.code, "message": exc.message, "field": exc.field}})
            raise
        self._complete(record.id, encode(result))
        return result

    def _claim(self, user_id: str, operation: str, key: str, digest: str) -> IdempotencyRecord:
        for _ in range(3):
            with self._db.uow() as uow:
                record = uow.session.scalars(
                    select(IdempotencyRecord).where(
                        IdempotencyRecord.user_id == user_id,
                        IdempotencyRecord.operation == operation,
                        IdempotencyRecord.key == key,
                    )
                ).one_or_none()
                if record is not None:
                    if record.request_hash != digest:
                        raise Conflict("idempotencyKey was already used with a different input", field="idempotencyKey")
                    return record
                record = IdempotencyRecord(
                    id=new_id("idem"), user_id=user_id, operation=operation, key=key, request_hash=digest
                )
                uow.session.add(record)
                try:
                    uow.commit()
                except IntegrityError:
                    time.sleep(0.01)  # a concurrent first use won: read its record
                    continue
                return record
        raise Conflict("idempotencyKey is being used by a concurrent request", field="idempotencyKey")

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
                uow.commit()

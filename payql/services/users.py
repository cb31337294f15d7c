from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from payql.auth import Principal
from payql.db import Database
from payql.models import User


class UserService:
    """Mirrors token subjects into `users` with their roles, the first time they call (and when roles change).

    A small per-process cache remembers who is recorded already, so a steady stream of requests costs no SQL.
    """

    def __init__(self, db: Database, cache_size: int = 10_000) -> None:
        self._db = db
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._cache_size = cache_size

    def ensure(self, principal: Principal) -> None:
        roles = ",".join(sorted(principal.roles))
        with self._lock:
            if self._seen.get(principal.user_id) == roles:
                self._seen.move_to_end(principal.user_id)
                return
        try:
            self._record(principal.user_id, roles)
        except IntegrityError:
            # Another request recorded the same user at the same moment: theirs stands, ours updates it.
            self._record(principal.user_id, roles)
        with self._lock:
            self._seen[principal.user_id] = roles
            while len(self._seen) > self._cache_size:
                self._seen.popitem(last=False)

    def _record(self, user_id: str, roles: str) -> None:
        with self._db.uow() as uow:
            user = uow.session.scalars(select(User).where(User.id == user_id)).one_or_none()
            if user is None:
                uow.session.add(User(id=user_id, roles=roles))
            elif user.roles != roles:
                user.roles = roles
            uow.commit()

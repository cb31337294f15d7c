"""The typed GraphQL context, built per request by the HTTP view."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from payql.auth import AuthError, Principal
from payql.schema.loaders import Loaders
from payql.services import Services
from payql.services.errors import Unauthenticated


@dataclass(slots=True)
class Context:
    services: Services
    principal: Principal | None
    auth_error: AuthError | None
    request_id: str
    # the object types whose rows this operation reads lean (schema/limits.py's `lean_types`: set before it runs)
    lean: frozenset[str] = frozenset()
    # What a subscription's resolver read, as `payql.live` keys: the changes that make it read again.
    watched: set[tuple[str, str]] = field(default_factory=set)
    _session: Session | None = field(default=None, init=False)
    _loaders: Loaders | None = field(default=None, init=False)

    def require_principal(self) -> Principal:
        if self.principal is None:
            reason = self.auth_error.message if self.auth_error else "authentication required"
            raise Unauthenticated(reason)
        return self.principal

    @property
    def session(self) -> Session:
        """A read session for this request's queries and loaders, opened on first use."""
        if self._session is None:
            self._session = self.services.db.new_session()
        return self._session

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders(self.session, self.services.catalogue, self.lean)
        return self._loaders

    def close(self) -> None:
        if self._session is not None:
            self._session.rollback()
            self._session.close()
            self._session = None

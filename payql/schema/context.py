"""The typed GraphQL context, built per request by the HTTP view."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection
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
    _connection: Connection | None = field(default=None, init=False)
    _session: Session | None = field(default=None, init=False)
    _loaders: Loaders | None = field(default=None, init=False)

    def require_principal(self) -> Principal:
        if self.principal is None:
            reason = self.auth_error.message if self.auth_error else "authentication required"
            raise Unauthenticated(reason)
        return self.principal

    @property
    def connection(self) -> Connection:
        """This request's read connection (SQLAlchemy Core), opened on first use: lists and loaders read plain rows
        on it, without a Session's bookkeeping per statement."""
        if self._connection is None:
            self._connection = self.services.db.engine.connect()
        return self._connection

    @property
    def session(self) -> Session:
        """A read session for the resolvers that read ORM objects, on the same connection and in the same
        transaction as the lists and loaders, opened on first use."""
        if self._session is None:
            connection = self.connection
            if not connection.in_transaction():
                connection.begin()  # the session joins it, and leaves its end to `close`
            self._session = self.services.db.session_on(connection)
        return self._session

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders(self.connection, self.services.catalogue, self.lean)
        return self._loaders

    def close(self) -> None:
        """End the request's read transaction with COMMIT (it wrote nothing): on PostgreSQL a ROLLBACK would also
        drop the connection's prepared statements (see `payql.db`)."""
        self._loaders = None
        session, connection = self._session, self._connection
        self._session = self._connection = None
        if session is not None:
            session.close()
        if connection is not None:
            try:
                if connection.in_transaction():
                    connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                connection.close()

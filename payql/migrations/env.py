"""Alembic environment: the URL comes from the caller's Config (`payql migrate`) or from Settings."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from payql.db import make_engine
from payql.models import Base
from payql.models.base import UTCDateTime
from payql.settings import load_settings

config = context.config


def render_item(type_: str, obj: object, autogen_context: Any) -> str | Literal[False]:
    """Autogenerate writes our UTCDateTime as an importable name."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from payql.models.base import UTCDateTime")
        return "UTCDateTime()"
    return False


url = config.get_main_option("sqlalchemy.url") or load_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection, target_metadata=Base.metadata, render_as_batch=True, render_item=render_item
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

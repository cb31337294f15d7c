"""A GraphQL read leaves no reference cycles: everything a request built (its context, loaders, execution context,
the rows it read) is freed by reference counting when it ends, so the cyclic garbage collector has nothing to
find. When each request left cycles behind, the collector ran every few requests and took 8% of the wall time
under 32 concurrent list requests (`bench/calls.py`'s `graphql_gc_share`; bench/README.md, "Fifth pass")."""

from __future__ import annotations

import gc
from typing import Any

from flows import paid_enroll
from support import Api

from payql.app import services_of
from payql.auth import Principal
from payql.schema import build_schema
from payql.schema.context import Context
from payql.settings import Settings

PAGE = """{ payments(first: 20) { totalCount pageInfo { hasNextPage endCursor }
  edges { cursor node { id status amount { amount currency } enroll { id title status payment { id } }
    refunds { id amount { amount } status } disputes { id } } } } }"""
PROJECTS = ("payql", "graphql", "strawberry", "sqlalchemy")


def _ours(thing: Any) -> bool:
    owner = getattr(thing, "__self__", thing)  # a bound method: the object it is bound to
    return type(owner).__module__.startswith(PROJECTS)


def test_a_page_of_payments_with_nested_lists_leaves_no_reference_cycles(api: Api, settings: Settings) -> None:
    client, provider = api.user("client-g"), api.user("provider-g", "provider")
    for _ in range(3):
        paid_enroll(client, provider)
    services = services_of(api.app)
    schema = build_schema(settings)
    principal = Principal(client.id, frozenset())

    def page() -> dict[str, Any]:
        context = Context(services=services, principal=principal, auth_error=None, request_id="gc")
        try:
            result = schema.execute_sync(PAGE, context_value=context)
        finally:
            context.close()
        assert not result.errors, result.errors
        assert result.data is not None
        return result.data

    page()  # warm: caches of parsed documents, plans and statements are built once, not per request
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        data = page()
        gc.collect()
        cyclic = [thing for thing in gc.garbage if _ours(thing)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert data["payments"]["totalCount"] == 3
    assert all(edge["node"]["enroll"]["payment"] for edge in data["payments"]["edges"])
    assert cyclic == [], sorted({type(getattr(thing, "__self__", thing)).__qualname__ for thing in cyclic})

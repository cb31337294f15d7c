"""A verified webhook event is checked when it is made: what the webhook log cannot hold or look up never gets
further than the route (400 once, instead of a 500 at every retry of the provider)."""

from __future__ import annotations

from typing import Any

import pytest

from payql.providers.base import ObjectKind, ProviderEvent

GOOD: dict[str, Any] = {
    "dedupe_key": "evt_1",
    "event_type": "payment_intent.succeeded",
    "kind": ObjectKind.PAYMENT,
    "object_id": "pi_1",
    "handled": True,
    "payment_id": "pay_1",
    "payment_ref": "pi_1",
    "expect": None,
}


def test_a_well_formed_event_is_made() -> None:
    event = ProviderEvent(**GOOD)

    assert (event.kind, event.payment_ref, event.handled) == (ObjectKind.PAYMENT, "pi_1", True)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("dedupe_key", "", "unusable dedupe key"),
        ("dedupe_key", "e" * 256, "unusable dedupe key"),
        ("dedupe_key", 12, "unusable dedupe key"),
        ("event_type", "t" * 101, "unusable event type"),
        ("event_type", None, "unusable event type"),
        ("object_id", {"id": 1}, "unusable object id"),
        ("object_id", "pi_\x00", "unusable object id"),
        ("payment_id", ["pay_1"], "unusable payment id"),
        ("payment_ref", "pi\x00", "unusable payment reference"),
        ("expect", 3, "unusable expected status"),
        ("kind", "payment", "unusable object kind"),
    ],
)
def test_what_the_log_cannot_hold_is_refused(field: str, value: object, problem: str) -> None:
    with pytest.raises((ValueError, TypeError), match=problem):
        ProviderEvent(**{**GOOD, field: value})

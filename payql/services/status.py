"""The payment status machine (DESIGN.md §3): the only moves a payment can make.

```
PENDING ──> REQUIRES_ACTION ──> PROCESSING ──> SUCCEEDED ──> PARTIALLY_REFUNDED ──> REFUNDED
   │              │                  │     └─> AUTHORIZED ──> SUCCEEDED (capture)
   │              │                  │               └──────> CANCELED (void / hold expired)
   └──────────────┴──────────────────┴─> FAILED | CANCELED
```

The three states before any money is held may move among each other (a declined attempt sends a Stripe intent
back to `requires_payment_method`, which is PENDING) and forward to any later state. Nothing moves backwards: a
late `succeeded` after `refunded` is recorded and ignored.
"""

from __future__ import annotations

from payql.models.enums import PaymentStatus as S

NOT_YET = frozenset({S.PENDING, S.REQUIRES_ACTION, S.PROCESSING})
FINAL = frozenset({S.FAILED, S.CANCELED, S.REFUNDED})
CAPTURED = frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED})
REFUNDABLE = frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED})

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.REQUIRES_ACTION, S.PROCESSING, S.AUTHORIZED, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.REQUIRES_ACTION: frozenset({S.PENDING, S.PROCESSING, S.AUTHORIZED, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.PROCESSING: frozenset({S.PENDING, S.REQUIRES_ACTION, S.AUTHORIZED, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.AUTHORIZED: frozenset({S.SUCCEEDED, S.CANCELED}),
    S.SUCCEEDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.REFUNDED}),
    S.REFUNDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
}


def can_move(current: S, target: S) -> bool:
    return target in TRANSITIONS[current]

"""Crash points: where a process may die between a provider's answer and the transaction that records it.

The crash-recovery tests start a real server with `PAYQL_ENV=test PAYQL_FAULTS=capture`, make it reach that point,
and the process exits on the spot, as if killed: nothing after the provider call runs, no transaction commits, no
response goes out. `payql reconcile` must then finish the work (tests/e2e/test_crash_recovery.py).

Settings refuse `PAYQL_FAULTS` outside `PAYQL_ENV=test`, and nothing arms the points but `arm()`, which the app and
the CLI call with their settings: in production every `crash_point` is a set lookup on an empty set.
"""

from __future__ import annotations

import logging
import os
from typing import Final

from payql.settings import Settings

logger = logging.getLogger("payql.faults")

# Every point the code has, so that a typo in PAYQL_FAULTS fails loudly instead of testing nothing.
POINTS: Final = frozenset({"create_payment", "capture", "void", "refund", "payout"})
CRASH_EXIT_CODE: Final = 137  # what a shell reports for a process killed by SIGKILL

_armed: set[str] = set()


def arm(settings: Settings) -> None:
    """Arm the crash points that `settings.payql_faults` names (only ever non-empty with PAYQL_ENV=test)."""
    unknown = set(settings.payql_faults) - POINTS
    if unknown:
        raise ValueError(f"unknown crash points in PAYQL_FAULTS: {sorted(unknown)}; known: {sorted(POINTS)}")
    _armed.clear()
    _armed.update(settings.payql_faults)


def crash_point(name: str) -> None:
    """Die here, at once and without cleaning up, when the point is armed."""
    if name in _armed:
        logger.critical("crash point %s reached: exiting as if killed", name)
        logging.shutdown()
        os._exit(CRASH_EXIT_CODE)

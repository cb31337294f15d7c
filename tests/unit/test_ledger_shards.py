"""Which row of an account a posting moves: platform-wide accounts are sharded by the posting's cause."""

from __future__ import annotations

from payql.models import LEDGER_SHARDS, SHARDED_KINDS, AccountKind
from payql.services.ledger import shard_of


def test_a_users_accounts_are_never_sharded() -> None:
    for kind in (AccountKind.PAYABLE, AccountKind.PAYOUTS_IN_FLIGHT, AccountKind.CREDITS):
        assert {shard_of(kind, f"pay_{i}") for i in range(200)} == {0}


def test_the_platform_wide_accounts_are_the_sharded_ones() -> None:
    assert frozenset(AccountKind) - SHARDED_KINDS == {
        AccountKind.PAYABLE,
        AccountKind.PAYOUTS_IN_FLIGHT,
        AccountKind.CREDITS,
    }


def test_the_same_cause_always_picks_the_same_shard_for_every_platform_account() -> None:
    for cause in ("pay_01", "ref_9", "wdr_x", ""):
        shards = {shard_of(kind, cause) for kind in SHARDED_KINDS}
        assert len(shards) == 1
        assert shards == {shard_of(AccountKind.REVENUE, cause)}


def test_shards_stay_in_range_and_spread_over_all_of_them() -> None:
    picked = [shard_of(AccountKind.PROVIDER_CASH, f"pay_{i:06d}") for i in range(2000)]
    assert set(picked) == set(range(LEDGER_SHARDS))
    # Spread evenly enough that concurrent captures rarely meet on a row: no shard takes twice its share.
    assert max(picked.count(shard) for shard in range(LEDGER_SHARDS)) < 2 * 2000 / LEDGER_SHARDS

"""KeyQuota: keys per caller in fixed windows, with a bounded table."""

from __future__ import annotations

import pytest

from flashsale.domain import TooManyKeys
from flashsale.service.key_quota import KeyQuota
from tests.support.clock import HandClock


def test_each_identity_has_its_quota_until_the_window_turns() -> None:
    clock = HandClock(100.0)
    quota = KeyQuota(2, 5, window=60, clock=clock)
    quota.admit("address:a", credential=False)
    quota.admit("address:a", credential=False)
    with pytest.raises(TooManyKeys) as refused:
        quota.admit("address:a", credential=False)
    assert refused.value.retry_after == 60
    quota.admit("address:b", credential=False)  # another identity, its own count
    for _ in range(5):
        quota.admit("backend:shop", credential=True)
    with pytest.raises(TooManyKeys):
        quota.admit("backend:shop", credential=True)
    clock.now += 60
    quota.admit("address:a", credential=False)


def test_the_table_of_identities_is_bounded() -> None:
    quota = KeyQuota(1, 1, window=60, clock=HandClock(100.0), max_identities=3)
    for n in range(3):
        quota.admit(f"address:{n}", credential=False)
    quota.admit("address:new", credential=False)  # full: the table starts again
    assert len(quota._counts) == 1

"""The N most recently active owners keep their values (each tenant's node cache); the longest idle loses its own."""

from __future__ import annotations

import pytest

from tenancy.recent_owners import RecentOwners


def test_an_owner_keeps_its_value_while_among_the_most_recent():
    kept = RecentOwners(2)
    first, dropped = kept.take("a", object)
    assert dropped == []
    kept.take("b", object)
    assert kept.take("a", object) == (first, [])  # "b" ran in between: "a" still has its own
    assert kept.owners() == ["b", "a"]


def test_the_longest_idle_owner_is_dropped_when_another_becomes_active():
    kept = RecentOwners(2)
    a, _ = kept.take("a", lambda: "cache of a")
    kept.take(None, lambda: "operators' cache")
    kept.take("a", lambda: "never made")
    value, dropped = kept.take("c", lambda: "cache of c")
    assert (value, dropped, kept.owners()) == ("cache of c", ["operators' cache"], ["a", "c"])
    assert kept.take("a", lambda: "never made")[0] == a


def test_one_kept_owner_behaves_as_one_shared_cache_and_clear_forgets_all():
    kept = RecentOwners(1)
    kept.take("a", lambda: 1)
    assert kept.take("b", lambda: 2) == (2, [1])
    assert kept.take("a", lambda: 3) == (3, [2])
    assert kept.clear() == [3] and kept.owners() == []
    with pytest.raises(ValueError):
        RecentOwners(0)

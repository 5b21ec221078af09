"""What the guard keeps in memory per prompt (owners, outcomes) stays bounded and keeps the newest prompts."""

from __future__ import annotations

from tenancy.owners import RecentPrompts


def test_the_oldest_tenth_is_forgotten_when_full_and_the_newest_stay():
    owners = RecentPrompts(limit=50)
    for n in range(50):
        owners.remember(f"p{n}", "acme")
    owners.remember("p7", "beta")  # known already: replaced, nothing forgotten
    assert len(owners) == 50 and owners["p7"] == "beta"
    owners.remember("p50", "acme")
    assert len(owners) == 46 and "p0" not in owners and "p4" not in owners and "p5" in owners
    for n in range(51, 1000):
        owners.remember(f"p{n}", "acme")
    assert len(owners) <= 50 and all(f"p{n}" in owners for n in range(990, 1000))

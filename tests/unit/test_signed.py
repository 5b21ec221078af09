"""Sealed tokens: what one purpose sealed, another never accepts; anything altered or foreign is refused."""

from __future__ import annotations

from tenancy.signed import FileGrant, seal, sign, unseal, verify

SECRET = b"s" * 32


def test_a_token_opens_only_for_its_own_purpose_and_secret():
    token = seal(SECRET, "file", {"a": 1})
    assert unseal(SECRET, "file", token) == {"a": 1}
    assert unseal(SECRET, "oidc-flow", token) is None
    assert unseal(b"t" * 32, "file", token) is None


def test_a_download_grant_round_trips_until_it_expires_and_not_as_another_kind_of_token():
    grant = FileGrant("acme", "output", "sub", "x.png", 2_000)
    token = sign(SECRET, grant)
    assert verify(SECRET, token, now=2_000) == grant
    assert verify(SECRET, token, now=2_001) is None
    assert verify(SECRET, seal(SECRET, "oidc-flow", ["acme", "output", "sub", "x.png", 2_000]), now=0) is None
    for garbage in ("", ".", "a.b", seal(SECRET, "file", {"exp": 1}), seal(SECRET, "file", [1, 2, 3, 4, "x"])):
        assert verify(SECRET, garbage, now=0) is None

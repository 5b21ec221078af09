"""What an identity provider's claims may vouch for (the JWT path and the OIDC sign-in share the rule), and when
a tenant a credential names may act."""

from __future__ import annotations

import pytest

from tenancy.config import ExternalIdentity
from tenancy.identity import external_identity, require_active
from tenancy.records import Tenant
from tenancy.refusal import Refusal

EXT = ExternalIdentity(tenant_claim="org", role_claim="grp")


@pytest.mark.parametrize(("claims", "expected"), [
    ({"sub": "u1", "org": "acme"}, ("external:u1", "acme", "member")),
    ({"sub": "u1", "org": "acme", "grp": None}, ("external:u1", "acme", "member")),
    ({"sub": "u1", "org": "acme", "grp": "tenant_admin"}, ("external:u1", "acme", "tenant_admin")),
    ({"sub": "u1", "org": "acme", "tenant": "other", "role": "admin"}, ("external:u1", "acme", "member")),
])
def test_the_operators_claim_names_pick_tenant_and_role(claims, expected):
    assert external_identity(claims, EXT) == expected


@pytest.mark.parametrize(("claims", "claim"), [
    ({"sub": "u1"}, "tenant"),
    ({"sub": "u1", "org": None}, "tenant"),
    ({"sub": "u1", "org": ["acme"]}, "tenant"),
    ({"sub": "u1", "org": "../acme"}, "tenant"),
    ({"sub": "u1", "org": "acme", "grp": "admin"}, "role"),   # operators are never made by a claim
    ({"sub": "u1", "org": "acme", "grp": ["member"]}, "role"),
])
def test_a_claim_that_cannot_vouch_is_refused_naming_it(claims, claim):
    with pytest.raises(Refusal) as refused:
        external_identity(claims, EXT)
    assert (refused.value.status, refused.value.reason, refused.value.extra) == (401, "invalid_token",
                                                                                 {"claim": claim})


def test_only_an_existing_enabled_tenant_may_act():
    tenant = Tenant("acme", "basic")
    assert require_active(tenant, "acme") is tenant
    for missing_or_disabled in (None, Tenant("acme", "basic", status="disabled")):
        with pytest.raises(Refusal) as refused:
            require_active(missing_or_disabled, "acme")
        assert (refused.value.status, refused.value.reason) == (401, "tenant_disabled")

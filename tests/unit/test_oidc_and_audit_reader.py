"""Pure helpers of the OpenID sign-in (PKCE, the signed flow cookie, safe redirects), and the field the guard
splices into ComfyUI's JSON answers."""

from __future__ import annotations

import json

from aiohttp import web

from tenancy.comfy.api.oidc import configured, pkce_challenge, seal, unseal
from tenancy.comfy.http import safe_next, with_field
from tenancy.config import ExternalIdentity

SECRET = b"k" * 32


def test_pkce_challenge_matches_rfc_7636_appendix_b():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_flow_cookie_round_trips_and_refuses_tampering_and_expiry():
    flow = {"state": "s", "nonce": "n", "verifier": "v", "next": "/", "exp": 2_000}
    token = seal(SECRET, flow)
    assert unseal(SECRET, token, now=1_000) == flow
    assert unseal(SECRET, token, now=2_001) is None
    assert unseal(b"x" * 32, token, now=1_000) is None
    payload, mac = token.split(".")
    assert unseal(SECRET, payload[:-2] + "AA." + mac, now=1_000) is None
    for garbage in ("", ".", "abc", "a.b.c", "%%%.###", seal(SECRET, {"exp": "never"})):
        assert unseal(SECRET, garbage, now=1_000) is None


def test_next_is_a_path_on_this_site():
    for good in ("/", "/?workflow=1", "/tenancy/admin"):
        assert safe_next(good) == good
    for bad in (None, "", "https://evil.example/", "//evil.example", "/\\evil.example", "evil", "/a\nb",
                "javascript:alert(1)"):
        assert safe_next(bad) == "/"


def test_sign_in_button_needs_discovery_and_a_client_id():
    assert not configured(None)
    assert not configured(ExternalIdentity(discovery_url="https://idp/.well-known/openid-configuration"))
    assert configured(ExternalIdentity(discovery_url="https://idp/.well-known/openid-configuration",
                                       client_id="comfyui"))


def test_a_field_is_spliced_into_json_object_answers_only():
    answer = with_field(web.json_response({"prompt_id": "p", "node_errors": {}}), "tenancy", {"rewrites": ["é"]})
    assert json.loads(answer.body) == {"prompt_id": "p", "node_errors": {}, "tenancy": {"rewrites": ["é"]}}
    assert answer.content_length == len(answer.body)
    assert json.loads(with_field(web.json_response({}), "t", 1).body) == {"t": 1}
    for other in (web.json_response([1]), web.Response(text="{}"), web.json_response({}, status=400)):
        before = other.body
        if other.status == 400:
            assert json.loads(with_field(other, "t", 1).body) == {"t": 1}  # errors are objects too
        else:
            assert with_field(other, "t", 1).body == before

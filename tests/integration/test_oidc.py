"""Sign-in with an OpenID Connect provider (authorization code + PKCE) against the tests' own provider on
loopback: the happy path, and every way the answer can be wrong (state, nonce, signature, audience, expiry,
tenant and role claims, a denied sign-in, a replayed callback, an open redirect)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

pytestmark = pytest.mark.comfy


@pytest.fixture
def provider(oidc_provider):
    oidc_provider.user = {"sub": "alice", "tenant": "tenant-a", "role": "member"}
    oidc_provider.bad = {}
    yield oidc_provider
    oidc_provider.bad = {}


def start(comfyui, session: requests.Session, next_path: str = "/") -> requests.Response:
    answer = session.get(f"{comfyui.url}/tenancy/oidc/start", params={"next": next_path}, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer


def sign_in(comfyui, next_path: str = "/") -> tuple[requests.Session, requests.Response, str]:
    """Browser-like: start → provider → callback; returns the session, the callback's answer and its URL."""
    session = requests.Session()
    to_provider = start(comfyui, session, next_path)
    back = session.get(to_provider.headers["Location"], allow_redirects=False)
    assert back.status_code == 302, back.text
    callback_url = back.headers["Location"]
    return session, session.get(callback_url, allow_redirects=False), callback_url


def login_error(answer: requests.Response) -> str | None:
    location = answer.headers.get("Location", "")
    return parse_qs(urlsplit(location).query).get("error", [None])[0] if location.startswith("/tenancy/login") \
        else None


def test_login_page_offers_the_provider(comfyui):
    options = requests.get(f"{comfyui.url}/tenancy/login/options").json()
    assert options == {"providers": [{"name": "Test IdP", "start": "/tenancy/oidc/start"}]}


def test_start_sends_the_browser_to_the_provider_with_pkce(comfyui, provider):
    session = requests.Session()
    answer = start(comfyui, session)
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert answer.headers["Location"].startswith(f"{provider.url}/authorize?")
    assert query["response_type"] == ["code"] and query["client_id"] == ["comfyui-tests"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == [f"{comfyui.url}/tenancy/oidc/callback"]
    assert query["state"][0] and query["nonce"][0] and "openid" in query["scope"][0].split()
    cookie = next(c for c in session.cookies if c.name == "tenancy_oidc")
    assert cookie.path == "/tenancy/oidc/" and cookie.has_nonstandard_attr("HttpOnly")
    assert query["code_challenge"][0] not in cookie.value  # the cookie carries the verifier, signed, not the challenge


def test_sign_in_sets_the_session_of_the_tenant_in_the_claim(comfyui, provider):
    provider.user = {"sub": "bob", "tenant": "tenant-b", "role": "tenant_admin"}
    session, answer, _ = sign_in(comfyui, next_path="/?workflow=x")
    assert answer.status_code == 302 and answer.headers["Location"] == "/?workflow=x"
    assert {"tenancy_session", "tenancy_refresh"} <= {c.name for c in session.cookies}
    me = session.get(f"{comfyui.url}/tenancy/me").json()
    assert (me["tenant"], me["role"], me["subject"]) == ("tenant-b", "tenant_admin", "external:bob")
    assert me["via"] == "cookie"
    token_request = provider.token_requests[-1]
    assert token_request["grant_type"] == "authorization_code" and len(token_request["code_verifier"]) >= 43
    assert "client_secret" not in token_request  # sent as HTTP Basic
    refreshed = session.post(f"{comfyui.url}/tenancy/refresh", headers={"Origin": comfyui.url})
    assert refreshed.status_code == 200 and refreshed.json()["tenant"] == "tenant-b"


@pytest.mark.parametrize(("bad", "code"), [
    ({"nonce": "another-sign-in"}, "oidc_token"),
    ({"aud": "another-client"}, "oidc_token"),
    ({"iss": "https://impostor.example"}, "oidc_token"),
    ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "oidc_token"),
    ({"sign_with": "other"}, "oidc_token"),
    ({"tenant": None}, "oidc_no_tenant"),
    ({"tenant": "../tenant-a"}, "oidc_no_tenant"),
    ({"tenant": "no-such-tenant"}, "oidc_tenant_disabled"),
    ({"role": "admin"}, "oidc_role"),
    ({"deny": True}, "oidc_denied"),
], ids=["nonce", "audience", "issuer", "expired", "signature", "no-tenant", "bad-tenant", "unknown-tenant",
        "operator-role", "denied"])
def test_wrong_answers_are_refused(comfyui, provider, bad, code):
    provider.bad = bad
    session, answer, _ = sign_in(comfyui)
    assert answer.status_code == 302 and login_error(answer) == code
    assert "tenancy_session" not in {c.name for c in session.cookies}


def test_state_must_match_the_flow_cookie(comfyui, provider):
    session = requests.Session()
    to_provider = start(comfyui, session)
    back = session.get(to_provider.headers["Location"], allow_redirects=False).headers["Location"]
    forged = back.replace("state=", "state=x")
    assert login_error(session.get(forged, allow_redirects=False)) == "oidc_state"
    stranger = requests.get(back, allow_redirects=False)  # the right URL in a browser that did not start it
    assert login_error(stranger) == "oidc_state"


def test_a_callback_cannot_be_replayed(comfyui, provider):
    session, answer, callback_url = sign_in(comfyui)
    assert login_error(answer) is None
    flow_cookie_gone = session.get(callback_url, allow_redirects=False)
    assert login_error(flow_cookie_gone) == "oidc_state"


def test_next_never_leaves_the_site(comfyui, provider):
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        _, answer, _ = sign_in(comfyui, next_path=target)
        assert answer.headers["Location"] == "/", target


def test_operators_cannot_be_made_by_the_provider_and_bearer_tokens_map_tenants(comfyui, provider):
    """The provider's own access tokens are accepted as bearer tokens only for tenant members (JWKS-verified)."""
    import jwt

    now = int(time.time())
    claims = {"iss": provider.url, "aud": "comfyui-tests", "sub": "svc", "iat": now, "exp": now + 300,
              "jti": "j1", "tenant": "tenant-b"}
    token = jwt.encode(claims, provider.key, algorithm="RS256", headers={"kid": provider.kid})
    me = requests.get(f"{comfyui.url}/tenancy/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["tenant"] == "tenant-b"
    operator = jwt.encode({**claims, "role": "admin", "jti": "j2"}, provider.key, algorithm="RS256",
                          headers={"kid": provider.kid})
    assert requests.get(f"{comfyui.url}/tenancy/me", headers={"Authorization": f"Bearer {operator}"}).status_code \
        == 401

"""Negative suite for credentials: every forged, stale, revoked or malformed credential is refused with a stable
reason code. A few positive controls prove the setup accepts a good credential, so each refusal means something.

Real `SqliteStore` in `tmp_path`, real secrets from `bootstrap.write_secret`, real settings from
`config.from_mapping` + `identity.token_settings`; external IdP keys are generated with `cryptography`.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tenancy import accounts, bootstrap, config, identity
from tenancy.identity import ACCESS_TYP, MAX_ACCESS_TTL_S, Authenticator
from tenancy.records import Account
from tenancy.refusal import Refusal
from tenancy.store.sqlite import SqliteStore

TENANT = "acme"
# The account behind the `account:alice` tokens; hashed once (argon2 is deliberately slow).
ALICE = Account(username="alice", tenant=TENANT, role="member", password_hash=identity.hash_password("alice-password"))
IDP_ISSUER = "https://idp.example"
IDP_AUDIENCE = "comfyui-ext"
IDP_KID = "idp-1"


def run(coro):
    return asyncio.run(coro)


def refused(reason: str, call, *args, **kwargs) -> Refusal:
    """Call (and await, when it returns a coroutine); it must raise a 401 Refusal with `reason`."""
    with pytest.raises(Refusal) as caught:
        result = call(*args, **kwargs)
        if asyncio.iscoroutine(result):
            run(result)
    assert caught.value.status == 401
    assert caught.value.reason == reason, f"refused as {caught.value.reason!r} ({caught.value}), not {reason!r}"
    return caught.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, claims: dict, key: bytes | None) -> str:
    """A compact JWS built by hand (PyJWT's encoder would refuse some of these): HMAC-SHA256 over the signing
    input with `key`, or an empty signature when `key` is None."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest()) if key is not None else ""
    return f"{signing_input}.{signature}"


# -- fixtures ----------------------------------------------------------------------------------------------

class Env:
    """Settings from a real config; the SQLite store (with tenant `acme`) is opened on first use only, since
    creating one costs tens of milliseconds and most cases never reach the store."""

    def __init__(self, base: Path, raw: dict | None = None) -> None:
        secret = base / "jwt.secret"
        if not secret.exists():
            bootstrap.write_secret(secret)
        self.base = base
        self.config = config.from_mapping(raw or {}, base_dir=base)
        self.settings = identity.token_settings(self.config)
        self._store: SqliteStore | None = None

    @property
    def store(self) -> SqliteStore:
        if self._store is None:
            self._store = SqliteStore(self.base / "tenancy.db")
            run(accounts.add_tenant(self._store, TENANT, "basic", self.config.plans))
            run(self._store.put_account(ALICE, create=True))
        return self._store

    @property
    def auth(self) -> Authenticator:
        return Authenticator(self.store, self.settings)

    def close(self) -> None:
        if self._store is not None:
            run(self._store.close())

    @property
    def kid(self) -> str:
        return identity.key_id(self.settings.signing_key)

    def header(self, **changes) -> dict:
        return {"alg": "HS256", "typ": ACCESS_TYP, "kid": self.kid, **changes}

    def claims(self, **changes) -> dict:
        now = int(time.time())
        return {"iss": self.settings.issuer, "aud": self.settings.audience, "sub": "account:alice", "iat": now,
                "nbf": now, "exp": now + 300, "jti": "jti-1", "tenant": TENANT, "role": "member", **changes}

    def token(self, **claim_changes) -> str:
        return forge(self.header(), self.claims(**claim_changes), self.settings.signing_key)


@pytest.fixture
def env(tmp_path) -> Env:
    e = Env(tmp_path)
    yield e
    e.close()


@dataclass(frozen=True)
class IdpKeys:
    private: rsa.RSAPrivateKey
    stranger: rsa.RSAPrivateKey  # a key the JWKS does not list

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def idp_keys() -> IdpKeys:
    def generate() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return IdpKeys(generate(), generate())


def write_jwks(path: Path, keys: IdpKeys) -> None:
    jwk = json.loads(RSAAlgorithm.to_jwk(keys.private.public_key()))
    jwk.update(kid=IDP_KID, alg="RS256", use="sig")
    path.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")


@pytest.fixture
def ext_env(tmp_path, idp_keys) -> Env:
    """Our HS256 secret plus an external RS256 identity provider verified against a JWKS file."""
    write_jwks(tmp_path / "jwks.json", idp_keys)
    e = Env(tmp_path, {"auth": {"external": {"jwks": "jwks.json", "algorithms": ["RS256"],
                                             "issuer": IDP_ISSUER, "audience": IDP_AUDIENCE}}})
    yield e
    e.close()


def idp_claims(**changes) -> dict:
    now = int(time.time())
    return {"iss": IDP_ISSUER, "aud": IDP_AUDIENCE, "sub": "user-42", "iat": now, "exp": now + 300,
            "jti": "idp-jti-1", "tenant": TENANT, **changes}


def idp_token(key, claims: dict | None = None, kid: str | None = IDP_KID, alg: str = "RS256") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(idp_claims() if claims is None else claims, key, algorithm=alg, headers=headers)


def without(claims: dict, name: str) -> dict:
    return {k: v for k, v in claims.items() if k != name}


# -- positive controls ---------------------------------------------------------------------------------------

def test_control_minted_access_token_is_accepted(env):
    token, claims = identity.mint_access(env.settings, "account:alice", TENANT, "member")
    assert identity.verify_access(env.settings, token)["jti"] == claims["jti"]
    principal = run(env.auth.from_access_token(token))
    assert (principal.kind, principal.tenant, principal.subject) == ("tenant", TENANT, "account:alice")


def test_control_hand_forged_token_with_our_secret_is_accepted(env):
    """The `forge` helper builds tokens the server accepts, so the forged negatives below differ in one way only."""
    assert identity.verify_access(env.settings, env.token())["sub"] == "account:alice"


def test_control_api_key_and_its_jwt_are_accepted(env):
    key, record = run(accounts.create_key(env.store, TENANT, "ci"))
    assert run(env.auth.from_api_key(key)).subject == f"key:{record.key_id}"
    token, _ = identity.mint_access(env.settings, f"key:{record.key_id}", TENANT, "member")
    assert run(env.auth.from_access_token(token)).tenant == TENANT


def test_control_external_rs256_token_is_accepted(ext_env, idp_keys):
    principal = run(ext_env.auth.from_access_token(idp_token(idp_keys.private)))
    assert (principal.kind, principal.tenant, principal.subject) == ("tenant", TENANT, "external:user-42")


def test_control_refresh_token_rotates_once(env):
    token, record = identity.new_refresh(env.settings, "account:alice", TENANT, "member")
    run(env.store.put_refresh(record))
    outcome, used = run(env.store.use_refresh(identity.digest(token), time.time()))
    assert outcome == "ok" and used.family == record.family


def test_control_nbf_slightly_in_the_future_is_within_leeway(env):
    ahead = int(time.time()) + env.settings.leeway_s // 2
    assert identity.verify_access(env.settings, env.token(nbf=ahead, iat=ahead))


# -- algorithm and key confusion -------------------------------------------------------------------------------

def test_alg_none_token_is_refused(env):
    refused("invalid_token", identity.verify_access, env.settings, forge(env.header(alg="none"), env.claims(), None))


@pytest.mark.parametrize("alg", ["None", "NONE", "nOnE"])
def test_alg_none_spelling_variants_are_refused(env, alg):
    refused("invalid_token", identity.verify_access, env.settings, forge(env.header(alg=alg), env.claims(), None))


def test_alg_none_token_is_refused_when_an_external_idp_is_configured(ext_env):
    for kid in (ext_env.kid, IDP_KID, None):
        header = {"alg": "none", "typ": ACCESS_TYP} | ({"kid": kid} if kid else {})
        refused("invalid_token", identity.verify_access, ext_env.settings, forge(header, idp_claims(), None))


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_with_our_secret_are_refused(env, alg):
    """The algorithm is pinned to HS256; a valid HS384/HS512 signature with our own secret is still refused."""
    token = jwt.encode(env.claims(), env.settings.signing_key, algorithm=alg,
                       headers={"kid": env.kid, "typ": ACCESS_TYP})
    refused("invalid_token", identity.verify_access, env.settings, token)


def test_rs256_public_key_used_as_hs256_secret_is_refused(ext_env, idp_keys):
    """The classic key-confusion attack: HMAC-sign with the IdP's public key PEM, under each plausible kid."""
    for kid in (IDP_KID, ext_env.kid, identity.key_id(idp_keys.public_pem)):
        header = {"alg": "HS256", "typ": ACCESS_TYP, "kid": kid}
        for claims in (idp_claims(), ext_env.claims()):
            refused("invalid_token", identity.verify_access, ext_env.settings,
                    forge(header, claims, idp_keys.public_pem))


def test_rs256_public_key_used_as_hs256_secret_is_refused_without_external_idp(env, idp_keys):
    header = env.header(kid=identity.key_id(idp_keys.public_pem))
    refused("invalid_token", identity.verify_access, env.settings, forge(header, env.claims(), idp_keys.public_pem))


def test_hs256_token_is_refused_when_only_external_rs256_jwks_matches_its_kid(ext_env):
    """An HS256 token that is not ours (its kid is the IdP's, or absent) goes to the external verifier, which
    never accepts HMAC, whatever secret signed it."""
    for kid in (IDP_KID, None):
        header = {"alg": "HS256", "typ": ACCESS_TYP} | ({"kid": kid} if kid else {})
        for secret in (b"guessed-secret", ext_env.settings.signing_key):
            exc = refused("invalid_token", identity.verify_access, ext_env.settings,
                          forge(header, idp_claims(), secret))
            assert "HS256" in str(exc)


def test_external_token_with_hs256_alg_is_refused_even_if_configured(tmp_path, idp_keys):
    """`algorithms: [RS256, HS256, none]` in the config: the HMAC and `none` entries are dropped."""
    write_jwks(tmp_path / "jwks.json", idp_keys)
    e = Env(tmp_path, {"auth": {"external": {"jwks": "jwks.json", "algorithms": ["RS256", "HS256", "hs512", "none"],
                                             "issuer": IDP_ISSUER, "audience": IDP_AUDIENCE}}})
    assert e.settings.external.algorithms == ["RS256"]
    refused("invalid_token", identity.verify_access, e.settings,
            forge({"alg": "HS256", "kid": IDP_KID}, idp_claims(), idp_keys.public_pem))
    refused("invalid_token", identity.verify_access, e.settings,
            forge({"alg": "none", "kid": IDP_KID}, idp_claims(), None))


def test_rs256_token_signed_by_unknown_key_is_refused(ext_env, idp_keys):
    refused("invalid_token", identity.verify_access, ext_env.settings, idp_token(idp_keys.stranger))


def test_rs256_token_with_kid_missing_from_jwks_is_refused(ext_env, idp_keys):
    exc = refused("invalid_token", identity.verify_access, ext_env.settings,
                  idp_token(idp_keys.private, kid="idp-unknown"))
    assert "unknown signing key" in str(exc)


def test_rs256_token_with_our_kid_is_refused(ext_env, idp_keys):
    """A kid of ours pins the HS256 path: an RS256 token cannot borrow it, even signed by the real IdP key."""
    refused("invalid_token", identity.verify_access, ext_env.settings,
            idp_token(idp_keys.private, ext_env.claims(), kid=ext_env.kid))


def test_rs256_token_is_refused_when_no_external_idp_is_configured(env, idp_keys):
    refused("invalid_token", identity.verify_access, env.settings, idp_token(idp_keys.private, env.claims()))


# -- time claims ---------------------------------------------------------------------------------------------

def test_expired_token_is_refused(env):
    token, _ = identity.mint_access(env.settings, "account:alice", TENANT, "member", ttl_s=60,
                                    now=time.time() - 3600)
    refused("token_expired", identity.verify_access, env.settings, token)


def test_token_expired_just_beyond_leeway_is_refused(env):
    past = int(time.time()) - env.settings.leeway_s - 5
    refused("token_expired", identity.verify_access, env.settings, env.token(exp=past, iat=past - 60, nbf=past - 60))


def test_not_yet_valid_token_is_refused(env):
    future = int(time.time()) + env.settings.leeway_s + 300
    exc = refused("invalid_token", identity.verify_access, env.settings, env.token(nbf=future, exp=future + 300))
    assert "not yet valid" in str(exc)


def test_token_minted_in_the_future_is_refused(env):
    token, _ = identity.mint_access(env.settings, "account:alice", TENANT, "member", now=time.time() + 600)
    refused("invalid_token", identity.verify_access, env.settings, token)


@pytest.mark.parametrize("claim", ["iat", "exp", "nbf", "jti", "sub", "iss", "aud"])
def test_token_missing_a_required_claim_is_refused(env, claim):
    token = forge(env.header(), without(env.claims(), claim), env.settings.signing_key)
    exc = refused("invalid_token", identity.verify_access, env.settings, token)
    assert claim in str(exc)


@pytest.mark.parametrize("claim, value", [("exp", "tomorrow"), ("iat", "now"), ("nbf", [1]), ("sub", 42),
                                          ("jti", 7)])
def test_token_with_mistyped_claim_is_refused(env, claim, value):
    refused("invalid_token", identity.verify_access, env.settings, env.token(**{claim: value}))


# -- issuer, audience, type, signature, kid -----------------------------------------------------------------------

def test_wrong_issuer_is_refused(env):
    refused("invalid_token", identity.verify_access, env.settings, env.token(iss="someone-else"))


def test_wrong_audience_is_refused(env):
    refused("invalid_token", identity.verify_access, env.settings, env.token(aud="another-service"))


def test_audience_list_is_refused_under_strict_audience(env):
    refused("invalid_token", identity.verify_access, env.settings,
            env.token(aud=[env.settings.audience, "another-service"]))


def test_token_with_flipped_signature_byte_is_refused(env):
    token, _ = identity.mint_access(env.settings, "account:alice", TENANT, "member")
    head, body, signature = token.split(".")
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1:]
    refused("invalid_token", identity.verify_access, env.settings, f"{head}.{body}.{flipped}")


def test_token_with_tampered_payload_is_refused(env):
    token, _ = identity.mint_access(env.settings, "account:alice", TENANT, "member")
    head, _, signature = token.split(".")
    body = b64(json.dumps(env.claims(tenant="other-tenant", role="admin")).encode())
    refused("invalid_token", identity.verify_access, env.settings, f"{head}.{body}.{signature}")


def test_token_signed_with_another_secret_under_our_kid_is_refused(env):
    refused("invalid_token", identity.verify_access, env.settings,
            forge(env.header(), env.claims(), b"not-the-server-secret"))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+JWT", "refresh", None])
def test_wrong_typ_is_refused(env, typ):
    header = env.header(typ=typ) if typ else without(env.header(), "typ")
    token = forge(header, env.claims(), env.settings.signing_key)
    refused("invalid_token", identity.verify_access, env.settings, token)


def test_unknown_kid_is_refused(env):
    refused("invalid_token", identity.verify_access, env.settings,
            forge(env.header(kid="0123456789ab"), env.claims(), env.settings.signing_key))


def test_missing_kid_is_refused(env):
    refused("invalid_token", identity.verify_access, env.settings,
            forge(without(env.header(), "kid"), env.claims(), env.settings.signing_key))


def test_non_string_kid_is_refused(env):
    refused("invalid_token", identity.verify_access, env.settings,
            forge(env.header(kid=["x"]), env.claims(), env.settings.signing_key))


@pytest.mark.parametrize("token", ["", "a.b", "not-a-jwt", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9..", "e30.e30.e30"])
def test_malformed_token_is_refused(env, token):
    refused("invalid_token", identity.verify_access, env.settings, token)


def test_token_of_a_retired_secret_is_refused_after_rotation(tmp_path):
    """While `jwt.secret.previous` exists its tokens are accepted; once it is removed they are refused."""
    token, _ = identity.mint_access(Env(tmp_path).settings, "account:alice", TENANT, "member")
    secret = tmp_path / "jwt.secret"
    secret.rename(tmp_path / "jwt.secret.previous")
    bootstrap.write_secret(secret)
    assert identity.verify_access(Env(tmp_path).settings, token)["sub"] == "account:alice"  # control
    (tmp_path / "jwt.secret.previous").unlink()
    refused("invalid_token", identity.verify_access, Env(tmp_path).settings, token)


# -- lifetime cap ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("asked", [MAX_ACCESS_TTL_S + 1, 86_400, 10**9])
def test_mint_access_never_issues_tokens_longer_than_two_hours(env, asked):
    _, claims = identity.mint_access(env.settings, "account:alice", TENANT, "member", ttl_s=asked)
    assert claims["exp"] - claims["iat"] == MAX_ACCESS_TTL_S == 7200


def test_mint_access_caps_a_configured_lifetime_beyond_two_hours(env):
    settings = dataclasses.replace(env.settings, access_ttl_s=30 * 86_400)
    _, claims = identity.mint_access(settings, "account:alice", TENANT, "member")
    assert claims["exp"] - claims["iat"] == MAX_ACCESS_TTL_S


def test_token_asked_for_a_day_is_refused_after_two_hours(env):
    issued = time.time() - MAX_ACCESS_TTL_S - env.settings.leeway_s - 5
    token, _ = identity.mint_access(env.settings, "account:alice", TENANT, "member", ttl_s=86_400, now=issued)
    refused("token_expired", identity.verify_access, env.settings, token)


# -- API keys --------------------------------------------------------------------------------------------------

def test_revoked_api_key_is_refused(env):
    key, record = run(accounts.create_key(env.store, TENANT, "ci"))
    assert run(env.store.revoke_key(record.key_id))
    refused("key_revoked", env.auth.from_api_key, key)


def test_expired_api_key_is_refused(env):
    key, _ = run(accounts.create_key(env.store, TENANT, "ci", expires_in_s=60))
    refused("key_expired", env.auth.from_api_key, key, now=time.time() + 3600)


@pytest.mark.parametrize("key", ["", "ct_", "ct__", "ct_abc", "ct_abc_", "ct__secret", "abc_def", "CT_abc_def",
                                 "Bearer ct_abc_def", "ct_0123456789ab_guessed-secret"])
def test_malformed_or_unknown_api_key_is_refused(env, key):
    refused("invalid_api_key", env.auth.from_api_key, key)


def test_api_key_with_right_id_and_wrong_secret_is_refused(env):
    key, record = run(accounts.create_key(env.store, TENANT, "ci"))
    for wrong in (f"ct_{record.key_id}_x", key[:-1], key + "x", f"ct_{record.key_id}_{record.secret_hash}"):
        refused("invalid_api_key", env.auth.from_api_key, wrong)


def test_revoked_key_with_wrong_secret_does_not_reveal_revocation(env):
    _, record = run(accounts.create_key(env.store, TENANT, "ci"))
    run(env.store.revoke_key(record.key_id))
    refused("invalid_api_key", env.auth.from_api_key, f"ct_{record.key_id}_wrong")


def test_key_of_a_disabled_tenant_is_refused(env):
    key, _ = run(accounts.create_key(env.store, TENANT, "ci"))
    run(accounts.update_tenant(env.store, TENANT, env.config.plans, status="disabled"))
    refused("tenant_disabled", env.auth.from_api_key, key)


# -- access tokens against the store ----------------------------------------------------------------------------

def test_access_token_of_a_disabled_tenant_is_refused(env):
    token, _ = identity.mint_access(env.settings, "account:alice", TENANT, "member")
    run(accounts.update_tenant(env.store, TENANT, env.config.plans, status="disabled"))
    refused("tenant_disabled", env.auth.from_access_token, token)


def test_access_token_of_an_unknown_tenant_is_refused(env):
    token, _ = identity.mint_access(env.settings, "account:alice", "ghost", "member")
    refused("unknown_tenant", env.auth.from_access_token, token)


def test_tenant_role_token_without_tenant_is_refused(env):
    token, _ = identity.mint_access(env.settings, "account:alice", None, "member")
    refused("unknown_tenant", env.auth.from_access_token, token)


def test_token_whose_jti_was_revoked_is_refused(env):
    token, claims = identity.mint_access(env.settings, "account:alice", TENANT, "member")
    assert run(env.auth.from_access_token(token))  # control: valid before logout
    run(env.store.revoke_jti(claims["jti"], claims["exp"]))
    refused("token_revoked", env.auth.from_access_token, token)


def test_jwt_minted_for_an_api_key_since_revoked_is_refused(env):
    _, record = run(accounts.create_key(env.store, TENANT, "ci"))
    token, _ = identity.mint_access(env.settings, f"key:{record.key_id}", TENANT, "member")
    run(env.store.revoke_key(record.key_id))
    refused("key_revoked", env.auth.from_access_token, token)


def test_jwt_minted_for_an_api_key_that_does_not_exist_is_refused(env):
    token, _ = identity.mint_access(env.settings, "key:0123456789ab", TENANT, "member")
    refused("key_revoked", env.auth.from_access_token, token)


# -- refresh tokens (the store answers "ok" | "reused" | "invalid"; the route maps them to refusals) ----------

def test_refresh_token_reuse_revokes_the_whole_family(env):
    first, record = identity.new_refresh(env.settings, "account:alice", TENANT, "member")
    run(env.store.put_refresh(record))
    assert run(env.store.use_refresh(identity.digest(first), time.time()))[0] == "ok"
    second, rotated = identity.new_refresh(env.settings, "account:alice", TENANT, "member", family=record.family)
    run(env.store.put_refresh(rotated))

    outcome, reused = run(env.store.use_refresh(identity.digest(first), time.time()))  # the stolen copy
    assert outcome == "reused" and reused.family == record.family
    # the legitimately rotated token of the same family is dead too, and stays dead
    assert run(env.store.use_refresh(identity.digest(second), time.time())) == ("invalid", None)
    assert run(env.store.use_refresh(identity.digest(second), time.time())) == ("invalid", None)
    # a token minted into the family afterwards (a race with the detection) is refused as well
    late, late_record = identity.new_refresh(env.settings, "account:alice", TENANT, "member", family=record.family)
    run(env.store.put_refresh(late_record))
    assert run(env.store.use_refresh(identity.digest(late), time.time())) == ("invalid", None)


def test_refresh_reuse_does_not_touch_other_families(env):
    stolen, record = identity.new_refresh(env.settings, "account:alice", TENANT, "member")
    other, other_record = identity.new_refresh(env.settings, "account:alice", TENANT, "member")
    run(env.store.put_refresh(record))
    run(env.store.put_refresh(other_record))
    run(env.store.use_refresh(identity.digest(stolen), time.time()))
    assert run(env.store.use_refresh(identity.digest(stolen), time.time()))[0] == "reused"
    assert run(env.store.use_refresh(identity.digest(other), time.time()))[0] == "ok"  # control


def test_expired_refresh_token_is_refused(env):
    token, record = identity.new_refresh(env.settings, "account:alice", TENANT, "member",
                                         now=time.time() - env.settings.refresh_ttl_s - 60)
    run(env.store.put_refresh(record))
    assert run(env.store.use_refresh(identity.digest(token), time.time())) == ("invalid", None)


def test_unknown_refresh_token_is_refused(env):
    assert run(env.store.use_refresh(identity.digest("never-issued"), time.time())) == ("invalid", None)


def test_refresh_token_of_a_logged_out_family_is_refused(env):
    token, record = identity.new_refresh(env.settings, "account:alice", TENANT, "member")
    run(env.store.put_refresh(record))
    run(env.store.revoke_family(record.family))
    assert run(env.store.use_refresh(identity.digest(token), time.time())) == ("invalid", None)


# -- external identity provider ----------------------------------------------------------------------------------

def test_external_token_without_tenant_claim_is_refused(ext_env, idp_keys):
    for claims in (without(idp_claims(), "tenant"), idp_claims(tenant=""), idp_claims(tenant=None),
                   idp_claims(tenant=None, role="member"), idp_claims(tenant=None, role="tenant_admin")):
        exc = refused("invalid_token", identity.verify_access, ext_env.settings, idp_token(idp_keys.private, claims))
        assert "tenant" in str(exc)


def test_external_token_of_a_disabled_tenant_is_refused(ext_env, idp_keys):
    run(accounts.update_tenant(ext_env.store, TENANT, ext_env.config.plans, status="disabled"))
    refused("tenant_disabled", ext_env.auth.from_access_token, idp_token(idp_keys.private))


def test_external_token_of_an_unknown_tenant_is_refused(ext_env, idp_keys):
    refused("unknown_tenant", ext_env.auth.from_access_token, idp_token(idp_keys.private, idp_claims(tenant="ghost")))


def test_expired_external_token_is_refused(ext_env, idp_keys):
    past = int(time.time()) - 3600
    refused("token_expired", identity.verify_access, ext_env.settings,
            idp_token(idp_keys.private, idp_claims(iat=past, exp=past + 60)))


def test_external_token_with_wrong_issuer_is_refused(ext_env, idp_keys):
    refused("invalid_token", identity.verify_access, ext_env.settings,
            idp_token(idp_keys.private, idp_claims(iss="https://evil.example")))


def test_external_token_with_wrong_audience_is_refused(ext_env, idp_keys):
    for aud in ("another-app", ext_env.settings.audience, [IDP_AUDIENCE, "another-app"]):
        refused("invalid_token", identity.verify_access, ext_env.settings,
                idp_token(idp_keys.private, idp_claims(aud=aud)))


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "jti", "iss", "aud"])
def test_external_token_missing_a_required_claim_is_refused(ext_env, idp_keys, claim):
    refused("invalid_token", identity.verify_access, ext_env.settings,
            idp_token(idp_keys.private, without(idp_claims(), claim)))


def test_external_token_whose_jti_was_revoked_is_refused(ext_env, idp_keys):
    token = idp_token(idp_keys.private)
    run(ext_env.store.revoke_jti("idp-jti-1", time.time() + 300))
    refused("token_revoked", ext_env.auth.from_access_token, token)


def test_external_token_with_flipped_signature_is_refused(ext_env, idp_keys):
    head, body, signature = idp_token(idp_keys.private).split(".")
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1:]
    refused("invalid_token", identity.verify_access, ext_env.settings, f"{head}.{body}.{flipped}")


def test_external_token_cannot_claim_one_of_our_subjects(ext_env, idp_keys):
    """`sub` is namespaced, so an IdP user named `key:<id>` does not inherit an API key's identity."""
    _, record = run(accounts.create_key(ext_env.store, TENANT, "ci"))
    claims = identity.verify_access(ext_env.settings,
                                    idp_token(idp_keys.private, idp_claims(sub=f"key:{record.key_id}")))
    assert claims["sub"] == f"external:key:{record.key_id}"


def test_external_verifier_with_missing_jwks_file_refuses(ext_env, idp_keys):
    (ext_env.base / "jwks.json").unlink()
    refused("invalid_token", identity.verify_access, ext_env.settings, idp_token(idp_keys.private))


# -- credentials that once escaped as other exceptions (now refused with a reason) ----------------------------

def test_token_with_undecodable_bytes_is_refused(env):
    refused("invalid_token", identity.verify_access, env.settings, "eyJ\udcff.e30.sig")


def test_api_key_with_undecodable_bytes_is_refused(env):
    refused("invalid_api_key", env.auth.from_api_key, "ct_\udcff_secret")


def test_jwt_minted_for_an_api_key_since_expired_is_refused(env):
    key, record = identity.key_record(TENANT, "member", "ci", expires=time.time() - 1)
    run(env.store.put_key(record))
    refused("key_expired", env.auth.from_api_key, key)  # the key itself is refused ...
    token, _ = identity.mint_access(env.settings, f"key:{record.key_id}", TENANT, "member")
    refused("key_expired", env.auth.from_access_token, token)  # ... but a JWT minted for it is accepted


@pytest.mark.parametrize("tenant", [{"id": TENANT}, [TENANT]])
def test_external_token_with_non_string_tenant_claim_is_refused(ext_env, idp_keys, tenant):
    refused("invalid_token", ext_env.auth.from_access_token, idp_token(idp_keys.private, idp_claims(tenant=tenant)))


# -- accepted credentials are remembered, never past a change -----------------------------------------------------

@pytest.mark.parametrize("change", ["revoke_key", "disable_tenant"])
def test_an_accepted_key_is_refused_at_once_after_a_change_by_another_process(env, change):
    """The authenticator remembers accepted credentials; a change made through another connection (the CLI,
    another ComfyUI on the same file) must still be seen on the very next request."""
    auth = env.auth
    key, record = run(accounts.create_key(env.store, TENANT, "ci"))
    assert run(auth.from_api_key(key)).tenant == TENANT
    assert run(auth.from_api_key(key)).tenant == TENANT  # remembered
    other = SqliteStore(env.base / "tenancy.db")
    try:
        if change == "revoke_key":
            run(other.revoke_key(record.key_id))
        else:
            run(accounts.update_tenant(other, TENANT, env.config.plans, status="disabled"))
    finally:
        run(other.close())
    refused("key_revoked" if change == "revoke_key" else "tenant_disabled", auth.from_api_key, key)


def test_other_processes_changes_arrive_within_the_configured_time(env):
    """ComfyUI reads other processes' changes at most every `auth.other_process_changes_s` (a PRAGMA per request
    was a third of the guard's cost): within that time a remembered key still works, after it it is refused;
    this process's own changes count at once."""
    key, record = run(accounts.create_key(env.store, TENANT, "ci"))
    other = SqliteStore(env.base / "tenancy.db")
    patient = SqliteStore(env.base / "tenancy.db", other_process_changes_s=60)
    brisk = SqliteStore(env.base / "tenancy.db", other_process_changes_s=0.3)
    try:
        slow_auth, quick_auth = Authenticator(patient, env.settings), Authenticator(brisk, env.settings)
        assert run(slow_auth.from_api_key(key)).tenant == run(quick_auth.from_api_key(key)).tenant == TENANT
        run(other.revoke_key(record.key_id))
        started = time.monotonic()
        assert run(slow_auth.from_api_key(key)).tenant == TENANT  # within its 60 s: still remembered
        while True:
            try:
                run(quick_auth.from_api_key(key))
            except Refusal as exc:
                assert exc.reason == "key_revoked"
                break
            assert time.monotonic() - started < 0.3 + 0.5, "the change did not arrive in time"
            time.sleep(0.02)
        run(accounts.update_tenant(patient, TENANT, env.config.plans, status="disabled"))  # its own change: at once
        refused("key_revoked", slow_auth.from_api_key, key)  # ... and the lookup sees the other's change too
    finally:
        for store in (other, patient, brisk):
            run(store.close())


def test_a_remembered_token_is_refused_after_logout_and_a_key_after_it_expires(env):
    auth = env.auth
    token, claims = identity.mint_access(env.settings, "account:alice", TENANT, "member")
    assert run(auth.from_access_token(token)) == run(auth.from_access_token(token))
    run(env.store.revoke_jti(claims["jti"], claims["exp"]))
    refused("token_revoked", auth.from_access_token, token)
    key, _ = run(accounts.create_key(env.store, TENANT, "ci", expires_in_s=60))
    assert run(auth.from_api_key(key))
    refused("key_expired", auth.from_api_key, key, now=time.time() + 3600)


def test_a_token_remembered_as_a_header_is_not_reused_as_a_cookie(env):
    auth = env.auth
    token, _ = identity.mint_access(env.settings, "account:alice", TENANT, "member")
    assert run(auth.from_access_token(token)).via == "jwt"
    assert run(auth.from_access_token(token, via="cookie")).via == "cookie"  # cookies need the same-origin check


def test_only_credentials_the_store_vouched_for_are_recalled_in_an_outage_and_only_until_they_expire(env):
    """What the guard serves reads to while the store is unreachable (`Authenticator.last_accepted`)."""
    auth = env.auth
    key, _ = run(accounts.create_key(env.store, TENANT, "ci"))
    token = env.token()
    assert auth.last_accepted("api_key", key) is None and auth.last_accepted("jwt", token) is None  # never seen
    run(auth.from_api_key(key))
    run(auth.from_access_token(token, via="cookie"))
    assert auth.last_accepted("api_key", key).tenant == TENANT
    assert auth.last_accepted("cookie", token).tenant == TENANT
    assert auth.last_accepted("jwt", token) is None  # accepted as a cookie only
    assert auth.last_accepted("cookie", token, now=time.time() + 301) is None  # past its exp
    assert auth.last_accepted("api_key", key + "x") is None

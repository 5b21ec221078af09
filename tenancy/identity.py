"""Credentials: API keys, passwords, access JWTs and rotating refresh tokens, and who they identify.

Pure functions for minting and checking; `Authenticator` adds the store look-ups (key, tenant, revocation).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import bootstrap
from .config import Config, ExternalIdentity
from .records import TENANT_ID, TENANT_ROLES, ApiKey, Principal, RefreshToken, Tenant
from .refusal import Refusal
from .store import Store

KEY_PREFIX = "ct_"
ACCESS_TYP = "at+jwt"
MAX_ACCESS_TTL_S = 7200
_hasher = PasswordHasher()


# -- API keys ------------------------------------------------------------------------------------------

def new_api_key() -> tuple[str, str, str]:
    """(key_id, full key shown once, hash stored)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{KEY_PREFIX}{key_id}_{secret}", digest(secret)


def split_api_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(KEY_PREFIX) or not key.isascii():
        return None
    key_id, _, secret = key[len(KEY_PREFIX):].partition("_")
    return (key_id, secret) if key_id and secret else None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- passwords -------------------------------------------------------------------------------------------

def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("passwords need at least 8 characters")
    return _hasher.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verifying against a dummy hash when the account does not exist keeps the timing the same.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def check_password(password_hash: str | None, password: str) -> bool:
    return password_matches(password_hash or _DUMMY_HASH, password) and password_hash is not None


# -- access tokens ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenSettings:
    secrets: tuple[bytes, ...]  # current first, then previous ones still accepted
    issuer: str
    audience: str
    access_ttl_s: int
    refresh_ttl_s: int
    leeway_s: int
    external: ExternalVerifier | None = None

    @property
    def signing_key(self) -> bytes:
        return self.secrets[0]


def token_settings(settings: Config) -> TokenSettings:
    """The signing secret (and a `<file>.previous` one still accepted during rotation) from the config."""
    current = settings.path(settings.auth.jwt_secret_file)
    previous = current.with_name(current.name + ".previous")
    keys = [bootstrap.read_secret(current)]
    if previous.exists():
        keys.append(bootstrap.read_secret(previous))
    external = settings.auth.external
    verifier = ExternalVerifier(external, settings.path(external.jwks) if "://" not in external.jwks else None,
                                settings.auth.leeway_s) if external else None
    return TokenSettings(secrets=tuple(keys), issuer=settings.auth.issuer, audience=settings.auth.audience,
                         access_ttl_s=settings.auth.access_ttl_s, refresh_ttl_s=settings.auth.refresh_ttl_s,
                         leeway_s=settings.auth.leeway_s, external=verifier)


def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"kid:" + secret).hexdigest()[:12]


def mint_access(settings: TokenSettings, subject: str, tenant: str | None, role: str,
                ttl_s: int | None = None, now: float | None = None) -> tuple[str, dict]:
    now = time.time() if now is None else now
    ttl = min(ttl_s or settings.access_ttl_s, MAX_ACCESS_TTL_S)
    claims = {"iss": settings.issuer, "aud": settings.audience, "sub": subject, "iat": int(now),
              "nbf": int(now), "exp": int(now) + ttl, "jti": uuid.uuid4().hex, "tenant": tenant, "role": role}
    token = jwt.encode(claims, settings.signing_key, algorithm="HS256",
                       headers={"kid": key_id(settings.signing_key), "typ": ACCESS_TYP})
    return token, claims


def verify_access(settings: TokenSettings, token: str) -> dict:
    """The claims of a valid access token (ours, or the external provider's mapped to ours);
    raises a 401 Refusal otherwise."""
    if not token.isascii():
        raise Refusal(401, "invalid_token", "malformed token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Refusal(401, "invalid_token", f"malformed token: {exc}") from None
    by_kid = {key_id(s): s for s in settings.secrets}
    secret = by_kid.get(header.get("kid", ""))
    if secret is None and settings.external is not None:
        return settings.external.verify(token, header)
    if secret is None or header.get("alg") != "HS256" or header.get("typ") != ACCESS_TYP:
        raise Refusal(401, "invalid_token", "token not issued by this server")
    try:
        return jwt.decode(token, secret, algorithms=["HS256"], audience=settings.audience, issuer=settings.issuer,
                          leeway=settings.leeway_s,
                          options={"require": ["exp", "iat", "nbf", "sub", "jti", "iss", "aud"], "strict_aud": True})
    except jwt.ExpiredSignatureError:
        raise Refusal(401, "token_expired", "the access token has expired; refresh it") from None
    except jwt.PyJWTError as exc:
        raise Refusal(401, "invalid_token", str(exc)) from None


class ExternalVerifier:
    """Tokens of an external identity provider, verified against its JWKS (a file, or a URL cached by
    PyJWKClient), asymmetric algorithms only; the tenant and role come from configured claims."""

    def __init__(self, external, jwks_file: Path | None, leeway_s: int) -> None:
        self.settings = external
        self.leeway_s = leeway_s
        self.algorithms = [a for a in external.algorithms if not a.upper().startswith("HS") and a != "none"]
        self.jwks_file = jwks_file
        self.client = None if jwks_file else jwt.PyJWKClient(external.jwks, cache_keys=True, lifespan=300)

    def signing_key(self, kid: str | None):
        if self.client is not None:
            return self.client.get_signing_key(kid).key
        keys = jwt.PyJWKSet.from_json(self.jwks_file.read_text(encoding="utf-8"))
        for key in keys.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise Refusal(401, "invalid_token", "unknown signing key")

    def verify(self, token: str, header: dict) -> dict:
        if header.get("alg") not in self.algorithms:
            raise Refusal(401, "invalid_token", f"algorithm {header.get('alg')!r} is not accepted")
        ext = self.settings
        try:
            claims = jwt.decode(token, self.signing_key(header.get("kid")), algorithms=self.algorithms,
                                audience=ext.audience or None, issuer=ext.issuer or None, leeway=self.leeway_s,
                                options={"require": ["exp", "iat", "sub", "jti"], "strict_aud": bool(ext.audience)})
        except jwt.ExpiredSignatureError:
            raise Refusal(401, "token_expired", "the identity provider's token has expired") from None
        except (jwt.PyJWTError, OSError) as exc:
            raise Refusal(401, "invalid_token", str(exc)) from None
        subject, tenant, role = external_identity(claims, ext)
        return {**claims, "sub": subject, "tenant": tenant, "role": role}


def external_identity(claims: dict, ext: ExternalIdentity) -> tuple[str, str, str]:
    """(subject, tenant, role) an identity provider's verified claims vouch for, by the operator's claim names.
    The provider vouches for tenant members only: operators are made here, never by a claim. A refusal's `extra`
    names the claim at fault (`tenant` or `role`)."""
    tenant, role = claims.get(ext.tenant_claim), claims.get(ext.role_claim) or "member"
    if not isinstance(tenant, str) or not TENANT_ID.match(tenant):
        raise Refusal(401, "invalid_token", f"the token has no valid `{ext.tenant_claim}` claim",
                      extra={"claim": "tenant"})
    if role not in TENANT_ROLES:
        raise Refusal(401, "invalid_token", f"role {role!r} cannot come from the identity provider",
                      extra={"claim": "role"})
    return f"external:{claims['sub']}", tenant, role


def require_active(tenant: Tenant | None, tenant_id: str) -> Tenant:
    """The tenant a credential or sign-in names, if it exists and is enabled."""
    if tenant is None or not tenant.active:
        raise Refusal(401, "tenant_disabled", f"tenant {tenant_id} does not exist or is disabled")
    return tenant


# -- refresh tokens --------------------------------------------------------------------------------------

def new_refresh(settings: TokenSettings, subject: str, tenant: str | None, role: str, family: str | None = None,
                now: float | None = None) -> tuple[str, RefreshToken]:
    now = time.time() if now is None else now
    token = secrets.token_urlsafe(32)
    record = RefreshToken(token_hash=digest(token), family=family or uuid.uuid4().hex, subject=subject,
                          tenant=tenant, role=role, expires=now + settings.refresh_ttl_s)
    return token, record


# -- who is calling --------------------------------------------------------------------------------------

REMEMBERED_CREDENTIALS = 4096  # the cache of accepted credentials starts over when this full


class Authenticator:
    """Turns a presented credential into a Principal, checking the store for revocation and status.

    A credential accepted once is remembered until it expires or the store's identity version moves (any
    change to tenants, accounts, keys or revoked tokens, by any process), so a revocation takes effect on the
    next request while an unchanged credential costs one cheap version check instead of two lookups."""

    def __init__(self, store: Store, settings: TokenSettings) -> None:
        self.store = store
        self.settings = settings
        self._accepted: dict[str, tuple[Principal, float, object]] = {}  # credential -> (principal, until, version)
        # credential -> (principal, until): the last acceptance whatever the version, for reads during an outage
        self._last: dict[str, tuple[Principal, float]] = {}

    def _recall(self, credential: str, now: float) -> tuple[Principal | None, object]:
        version = self.store.identity_version()
        entry = self._accepted.get(credential) if version is not None else None
        if entry is not None and entry[2] == version and now < entry[1]:
            return entry[0], version
        return None, version

    def _remember(self, credential: str, principal: Principal, until: float | None, version: object) -> Principal:
        until = math.inf if until is None else until
        if version is not None:
            if len(self._accepted) >= REMEMBERED_CREDENTIALS:
                self._accepted.clear()
            self._accepted[credential] = (principal, until, version)
        if len(self._last) >= REMEMBERED_CREDENTIALS:
            self._last.clear()
        self._last[credential] = (principal, until)
        return principal

    def last_accepted(self, via: str, credential: str, now: float | None = None) -> Principal | None:
        """Who this unexpired credential was when the store last vouched for it: what the guard can still serve
        reads to while the store is unreachable (a revocation made meanwhile applies once the store is back)."""
        entry = self._last.get(credential if via == "api_key" else f"{via}:{credential}")
        if entry is None or (time.time() if now is None else now) >= entry[1]:
            return None
        return entry[0]

    async def from_api_key(self, key: str, now: float | None = None) -> Principal:
        now = time.time() if now is None else now
        known, version = self._recall(key, now)
        if known is not None:
            return known
        parts = split_api_key(key)
        record = await self.store.get_key(parts[0]) if parts else None
        if record is None or not hmac.compare_digest(record.secret_hash, digest(parts[1])):
            raise Refusal(401, "invalid_api_key", "unknown API key")
        if record.revoked:
            raise Refusal(401, "key_revoked", "this API key has been revoked")
        if record.expires is not None and record.expires < now:
            raise Refusal(401, "key_expired", "this API key has expired")
        principal = await self._principal(f"key:{record.key_id}", record.tenant, record.role, record.key_id,
                                          "api_key", None)
        return self._remember(key, principal, record.expires, version)

    async def from_access_token(self, token: str, via: str = "jwt") -> Principal:
        known, version = self._recall(f"{via}:{token}", time.time())
        if known is not None:
            return known
        claims = verify_access(self.settings, token)
        if await self.store.jti_revoked(claims["jti"]):
            raise Refusal(401, "token_revoked", "this session has ended; log in again")
        await self.check_subject(claims["sub"])
        principal = await self._principal(claims["sub"], claims.get("tenant"), claims.get("role", "member"),
                                          claims["jti"], via, claims["exp"])
        return self._remember(f"{via}:{token}", principal, claims["exp"], version)

    async def check_subject(self, subject: str, now: float | None = None) -> None:
        """The key or account a token was issued for must still be usable."""
        kind, _, name = subject.partition(":")
        if kind == "key":
            key = await self.store.get_key(name)
            if key is None or key.revoked:
                raise Refusal(401, "key_revoked", "the API key behind this token has been revoked")
            if key.expires is not None and key.expires < (time.time() if now is None else now):
                raise Refusal(401, "key_expired", "the API key behind this token has expired")
        elif kind == "account":
            account = await self.store.get_account(name)
            if account is None or account.disabled:
                raise Refusal(401, "account_disabled", "this account no longer exists or is disabled")

    async def _principal(self, subject: str, tenant_id: str | None, role: str, credential: str, via: str,
                         expires: float | None) -> Principal:
        if role == "admin" and tenant_id is None:
            return Principal(kind="admin", subject=subject, role="admin", credential=credential, via=via,
                             expires=expires)
        tenant = await self.store.get_tenant(tenant_id) if tenant_id else None
        if tenant is None:
            raise Refusal(401, "unknown_tenant", "the tenant of this credential does not exist")
        if not tenant.active:
            raise Refusal(401, "tenant_disabled", f"tenant {tenant.id} is disabled")
        return tenant_principal(tenant, subject, role, credential, via, expires)


def tenant_principal(tenant: Tenant, subject: str, role: str, credential: str, via: str,
                     expires: float | None = None) -> Principal:
    return Principal(kind="tenant", subject=subject, tenant=tenant.id, role=role, plan=tenant.plan, tags=tenant.tags,
                     credential=credential, via=via, expires=expires)


def key_record(tenant: str | None, role: str, name: str, expires: float | None = None) -> tuple[str, ApiKey]:
    """A new key: (the key to show once, the record to store)."""
    key_id_, key, hashed = new_api_key()
    return key, ApiKey(key_id=key_id_, tenant=tenant, role=role, name=name, secret_hash=hashed, created=time.time(),
                       expires=expires)

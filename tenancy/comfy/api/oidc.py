"""Sign in with an OpenID Connect provider: the authorization-code flow with PKCE, done by the guard itself.

`GET /tenancy/oidc/start` remembers a fresh state, nonce and PKCE code verifier in a short-lived cookie signed
with the guard's key, and sends the browser to the provider. `GET /tenancy/oidc/callback` checks the state,
exchanges the code (with the verifier) at the provider's token endpoint, verifies the ID token against the
provider's JWKS (signature, issuer, audience, expiry, nonce), takes the tenant from the configured claim and
sets the same session cookies as a password login. The provider vouches for tenant members only: operators
are never made by a claim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from urllib.parse import urlencode, urlsplit

import aiohttp
import jwt
from aiohttp import web

from ... import identity, signed
from ...config import ExternalIdentity
from ...refusal import Refusal
from .. import http
from ..services import GuardServices
from .session import Sessions

log = logging.getLogger("tenancy")
FLOW_COOKIE = "tenancy_oidc"
FLOW_PATH = "/tenancy/oidc/"
FLOW_TTL_S = 600
METADATA_TTL_S = 3600
JWKS_TTL_S = 300
JWKS_REFETCH_S = 30  # an unknown `kid` refetches the keys, at most this often
HTTP_TIMEOUT_S = 10
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


CLAIM_ERRORS = {"tenant": "oidc_no_tenant", "role": "oidc_role"}  # the claim at fault -> what the page explains


class FlowError(Exception):
    """The sign-in cannot finish; `code` is what the login page explains to the person."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def configured(external: ExternalIdentity | None) -> bool:
    return bool(external and external.discovery_url and external.client_id)


def add_routes(routes: web.RouteTableDef, services: GuardServices) -> None:
    flow = OidcFlow(services)
    routes.get("/tenancy/login/options")(flow.options)
    routes.get("/tenancy/oidc/start")(flow.start)
    routes.get("/tenancy/oidc/callback")(flow.callback)


class OidcFlow:
    def __init__(self, services: GuardServices) -> None:
        self.services = services
        self.external = services.settings.auth.external
        self.sessions = Sessions(services)
        self._metadata: tuple[float, dict] | None = None
        self._jwks: tuple[float, jwt.PyJWKSet] | None = None

    @property
    def flow_secret(self) -> bytes:
        return b"oidc-flow:" + self.services.tokens.signing_key

    # -- what the login page offers ------------------------------------------------------------------------
    async def options(self, request: web.Request) -> web.Response:
        providers = []
        if configured(self.external):
            providers.append({"name": self.display_name, "start": "/tenancy/oidc/start"})
        return web.json_response({"providers": providers}, headers={"Cache-Control": "no-store"})

    @property
    def display_name(self) -> str:
        ext = self.external
        return ext.display_name or urlsplit(ext.issuer or ext.discovery_url).hostname or "identity provider"

    # -- step 1: to the provider -----------------------------------------------------------------------------
    async def start(self, request: web.Request) -> web.StreamResponse:
        await self.services.limit_ip(request)
        if not configured(self.external):
            raise Refusal(404, "not_found", "no OpenID Connect provider is configured")
        try:
            metadata = await self.metadata()
        except FlowError as exc:
            log.error("[tenancy] OpenID sign-in unavailable: %s", exc)
            return _back_to_login(exc.code)
        verifier = secrets.token_urlsafe(64)
        flow = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24), "verifier": verifier,
                "next": http.safe_next(request.rel_url.query.get("next")), "redirect": self.redirect_url(request),
                "exp": int(time.time()) + FLOW_TTL_S}
        query = {"response_type": "code", "client_id": self.external.client_id, "redirect_uri": flow["redirect"],
                 "scope": " ".join(self.external.scopes or ["openid"]), "state": flow["state"],
                 "nonce": flow["nonce"], "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"}
        response = web.Response(status=302, headers={"Location": f"{metadata['authorization_endpoint']}?"
                                                                 f"{urlencode(query)}", "Cache-Control": "no-store"})
        response.set_cookie(FLOW_COOKIE, seal(self.flow_secret, flow), max_age=FLOW_TTL_S, path=FLOW_PATH,
                            httponly=True, samesite="Lax", secure=self._secure(request))
        return response

    # -- step 2: back from the provider ----------------------------------------------------------------------
    async def callback(self, request: web.Request) -> web.StreamResponse:
        await self.services.limit_ip(request)
        if not configured(self.external):
            raise Refusal(404, "not_found", "no OpenID Connect provider is configured")
        query = request.rel_url.query
        try:
            flow = unseal(self.flow_secret, request.cookies.get(FLOW_COOKIE, ""))
            if flow is None or not hmac.compare_digest(str(flow.get("state", "")), query.get("state", "")):
                raise FlowError("oidc_state", "missing, expired or mismatched state")
            if "error" in query:
                raise FlowError("oidc_denied", f"the provider answered {query['error']!r}")
            if not query.get("code"):
                raise FlowError("oidc_state", "no authorization code")
            metadata = await self.metadata()
            id_token = await self.exchange(metadata, query["code"], flow)
            claims = await self.verify_id_token(metadata, id_token, flow["nonce"])
            subject, tenant, role = await self.identity_of(claims)
        except FlowError as exc:
            log.warning("[tenancy] OpenID sign-in refused: %s", exc)
            self.services.audit.record(ip=request.remote, route="GET /tenancy/oidc/callback", decision="refuse",
                                    reason=exc.code, detail=str(exc))
            response = _back_to_login(exc.code)
            response.del_cookie(FLOW_COOKIE, path=FLOW_PATH)
            return response
        issued = await self.sessions.issue(subject, tenant, role)
        response = web.Response(status=302, headers={"Location": flow["next"], "Cache-Control": "no-store"})
        self.sessions.set_cookies(request, response, issued)
        response.del_cookie(FLOW_COOKIE, path=FLOW_PATH)
        self.services.audit.record(tenant=tenant, principal=subject, ip=request.remote,
                                route="GET /tenancy/oidc/callback", decision="allow", via="oidc")
        return response

    async def exchange(self, metadata: dict, code: str, flow: dict) -> str:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": flow["redirect"],
                "code_verifier": flow["verifier"], "client_id": self.external.client_id}
        auth = None
        secret = self.client_secret()
        if secret:
            methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
            if "client_secret_basic" in methods:
                auth = aiohttp.BasicAuth(self.external.client_id, secret)
            else:
                form["client_secret"] = secret
        try:
            async with _client() as session, session.post(metadata["token_endpoint"], data=form, auth=auth,
                                                          headers={"Accept": "application/json"}) as answer:
                body = await answer.json(content_type=None)
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise FlowError("oidc_unavailable", f"token endpoint: {exc}") from None
        if status != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise FlowError("oidc_exchange", f"token endpoint answered {status} {error or ''}".strip())
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token.isascii():
            raise FlowError("oidc_exchange", "the token endpoint returned no ID token")
        return id_token

    async def verify_id_token(self, metadata: dict, id_token: str, nonce: str) -> dict:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise FlowError("oidc_token", f"malformed ID token: {exc}") from None
        algorithms = [a for a in self.external.algorithms if a in ASYMMETRIC]
        if header.get("alg") not in algorithms:
            raise FlowError("oidc_token", f"ID token algorithm {header.get('alg')!r} is not accepted")
        key = await self.signing_key(metadata, header.get("kid"))
        try:
            claims = jwt.decode(id_token, key, algorithms=algorithms, audience=self.external.client_id,
                                issuer=metadata["issuer"], leeway=self.services.settings.auth.leeway_s,
                                options={"require": ["exp", "iat", "sub", "iss", "aud", "nonce"]})
        except jwt.PyJWTError as exc:
            raise FlowError("oidc_token", f"ID token rejected: {exc}") from None
        if not hmac.compare_digest(str(claims.get("nonce")), nonce):
            raise FlowError("oidc_token", "ID token nonce does not match this sign-in")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.external.client_id:
            raise FlowError("oidc_token", "ID token for several audiences without us as its `azp`")
        return claims

    async def identity_of(self, claims: dict) -> tuple[str, str, str]:
        try:
            subject, tenant_id, role = identity.external_identity(claims, self.external)
        except Refusal as refusal:
            raise FlowError(CLAIM_ERRORS[refusal.extra["claim"]], refusal.message) from None
        try:
            identity.require_active(await self.services.store.get_tenant(tenant_id), tenant_id)
        except Refusal as refusal:
            raise FlowError("oidc_tenant_disabled", refusal.message) from None
        return subject, tenant_id, role

    # -- the provider's published facts -------------------------------------------------------------------------
    async def metadata(self) -> dict:
        now = time.monotonic()
        if self._metadata and now - self._metadata[0] < METADATA_TTL_S:
            return self._metadata[1]
        document = await _get_json(self.external.discovery_url)
        missing = [k for k in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
                   if not isinstance(document.get(k), str)]
        if missing:
            raise FlowError("oidc_unavailable", f"discovery document lacks {', '.join(missing)}")
        if self.external.issuer and document["issuer"] != self.external.issuer:
            raise FlowError("oidc_unavailable", f"discovery names issuer {document['issuer']!r}, the config "
                                                f"{self.external.issuer!r}")
        self._metadata = (now, document)
        return document

    async def signing_key(self, metadata: dict, kid: str | None):
        now = time.monotonic()
        for attempt in range(2):
            fresh = self._jwks is None or now - self._jwks[0] > JWKS_TTL_S
            may_refetch = self._jwks is None or now - self._jwks[0] > JWKS_REFETCH_S
            if fresh or (attempt and may_refetch):
                try:
                    keys = jwt.PyJWKSet.from_dict(await _get_json(metadata["jwks_uri"]))
                except jwt.PyJWTError as exc:
                    raise FlowError("oidc_unavailable", f"provider keys: {exc}") from None
                self._jwks = (now, keys)
            for key in self._jwks[1].keys:
                if kid is None or key.key_id == kid:
                    return key.key
        raise FlowError("oidc_token", f"the provider has no signing key {kid!r}")

    def client_secret(self) -> str:
        if not self.external.client_secret_file:
            return ""
        path = self.services.settings.path(self.external.client_secret_file)
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise FlowError("oidc_unavailable", f"cannot read the client secret: {exc}") from None

    def redirect_url(self, request: web.Request) -> str:
        if self.external.redirect_url:
            return self.external.redirect_url
        return f"{request.scheme}://{request.host}/tenancy/oidc/callback"

    def _secure(self, request: web.Request) -> bool:
        auth = self.services.settings.auth
        return auth.cookie_secure == "always" or (auth.cookie_secure == "auto" and request.secure)


# -- pure helpers ---------------------------------------------------------------------------------------------

def pkce_challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def seal(secret: bytes, flow: dict) -> str:
    return signed.seal(secret, "oidc-flow", flow)


def unseal(secret: bytes, token: str, now: float | None = None) -> dict | None:
    """The flow state of a valid, unexpired cookie, else None."""
    data = signed.unseal(secret, "oidc-flow", token)
    if not isinstance(data, dict) or not isinstance(data.get("exp"), int):
        return None
    return data if data["exp"] >= (time.time() if now is None else now) else None


def _back_to_login(code: str) -> web.Response:
    return web.Response(status=302, headers={"Location": f"/tenancy/login?error={code}", "Cache-Control": "no-store"})


async def _get_json(url: str) -> dict:
    try:
        async with _client() as session, session.get(url, headers={"Accept": "application/json"}) as answer:
            if answer.status != 200:
                raise FlowError("oidc_unavailable", f"{url} answered {answer.status}")
            document = await answer.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise FlowError("oidc_unavailable", f"{url}: {exc}") from None
    if not isinstance(document, dict):
        raise FlowError("oidc_unavailable", f"{url} is not a JSON object")
    return document


def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

"""Credentials to sessions: API key or password to tokens (`/tenancy/token`), refreshed tokens, and the browser's
login page, session cookies and logout."""

from __future__ import annotations

import time

from aiohttp import web

from ... import identity
from ...installation import PLUGIN_ROOT
from ...records import Principal, RateLimit
from ...refusal import Refusal
from ..http import PRINCIPAL_KEY, json_body, safe_next
from ..services import GuardServices

LOGIN_PAGE = PLUGIN_ROOT / "web" / "login.html"
REFRESH_COOKIE = "tenancy_refresh"


class Sessions:
    """Credentials in, tokens and cookies out; OpenID sign-in ends here too (`issue`, `set_cookies`)."""

    def __init__(self, services: GuardServices) -> None:
        self.services = services

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(LOGIN_PAGE, headers={"Cache-Control": "no-store"})

    # -- credentials -> tokens ---------------------------------------------------------------------------
    async def _check_credentials(self, request: web.Request, body: dict) -> tuple[str, str | None, str]:
        """(subject, tenant, role) for an API key or a username + password, throttled per IP and account."""
        parts = identity.split_api_key(str(body.get("api_key", "")))
        account = str(body.get("username") or (parts[0] if parts else ""))
        # Per IP these routes are limited by the middleware (ip_requests_per_minute); per account, strictly.
        per_minute = self.services.settings.auth.login_attempts_per_minute
        await self.services.rate_limit(RateLimit.per_minute(f"login-account:{account}", per_minute))
        if body.get("api_key"):
            principal = await self.services.auth.from_api_key(str(body["api_key"]))
            return principal.subject, principal.tenant, principal.role
        account = await self.services.store.get_account(account)
        if not identity.check_password(account.password_hash if account else None, str(body.get("password", ""))):
            raise Refusal(401, "invalid_credentials", "wrong username or password")
        if account.disabled:
            raise Refusal(401, "account_disabled", "this account is disabled")
        if account.tenant is not None:
            identity.require_active(await self.services.store.get_tenant(account.tenant), account.tenant)
        return f"account:{account.username}", account.tenant, account.role

    async def issue(self, subject: str, tenant: str | None, role: str, family: str | None = None) -> dict:
        settings = self.services.tokens
        access, claims = identity.mint_access(settings, subject, tenant, role)
        refresh, record = identity.new_refresh(settings, subject, tenant, role, family)
        await self.services.store.put_refresh(record)
        return {"access_token": access, "token_type": "Bearer", "expires_in": claims["exp"] - claims["iat"],
                "refresh_token": refresh, "tenant": tenant, "role": role}

    async def token(self, request: web.Request) -> web.Response:
        body = await _body(request)
        header = request.headers.get("Authorization", "")
        if not body.get("api_key") and header.lower().startswith("bearer "):
            body["api_key"] = header[7:].strip()
        subject, tenant, role = await self._check_credentials(request, body)
        return web.json_response(await self.issue(subject, tenant, role))

    async def refresh(self, request: web.Request) -> web.Response:
        body = await _body(request)
        presented = str(body.get("refresh_token") or request.cookies.get(REFRESH_COOKIE, ""))
        if not presented.isascii():
            raise Refusal(401, "invalid_refresh_token", "malformed refresh token")
        outcome, record = await self.services.store.use_refresh(identity.digest(presented), time.time())
        if outcome == "reused":
            self.services.audit.record(tenant=record.tenant, principal=record.subject, ip=request.remote,
                                    route="POST /tenancy/refresh", decision="refuse", reason="refresh_reused")
            raise Refusal(401, "refresh_reused", "this refresh token was already used; the session is revoked")
        if outcome != "ok":
            raise Refusal(401, "invalid_refresh_token", "unknown, expired or revoked refresh token")
        await self._still_valid(record.subject, record.tenant)
        issued = await self.issue(record.subject, record.tenant, record.role, record.family)
        response = web.json_response(issued)
        if REFRESH_COOKIE in request.cookies:
            self.set_cookies(request, response, issued)
        return response

    async def _still_valid(self, subject: str, tenant_id: str | None) -> None:
        await self.services.auth.check_subject(subject)
        if tenant_id is not None:
            identity.require_active(await self.services.store.get_tenant(tenant_id), tenant_id)

    # -- browser session -----------------------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.Response:
        """Sets the session cookies; `next` in the answer is where the login page goes then: the `next` it sent
        when that is a path on this site (never another host: no open redirect), otherwise the editor."""
        body = await _body(request)
        subject, tenant, role = await self._check_credentials(request, body)
        issued = await self.issue(subject, tenant, role)
        response = web.json_response({"tenant": tenant, "role": role, "expires_in": issued["expires_in"],
                                      "next": safe_next(str(body.get("next") or ""))})
        self.set_cookies(request, response, issued)
        self.services.audit.record(tenant=tenant, principal=subject, ip=request.remote, route="POST /tenancy/login",
                                decision="allow")
        return response

    def set_cookies(self, request: web.Request, response: web.Response, issued: dict) -> None:
        auth = self.services.settings.auth
        secure = auth.cookie_secure == "always" or (auth.cookie_secure == "auto" and request.secure)
        response.set_cookie(auth.cookie_name, issued["access_token"], max_age=issued["expires_in"], path="/",
                            httponly=True, samesite="Lax", secure=secure)
        response.set_cookie(REFRESH_COOKIE, issued["refresh_token"], max_age=auth.refresh_ttl_s,
                            path="/tenancy/", httponly=True, samesite="Strict", secure=secure)

    async def logout(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL_KEY]
        if principal.via in ("jwt", "cookie") and principal.expires:
            await self.services.store.revoke_jti(principal.credential, principal.expires)
        presented = str(request.cookies.get(REFRESH_COOKIE) or (await _body(request)).get("refresh_token") or "")
        if presented and presented.isascii():
            _, record = await self.services.store.use_refresh(identity.digest(presented), time.time())
            if record is not None:
                await self.services.store.revoke_family(record.family)
        response = web.json_response({"logged_out": True})
        response.del_cookie(self.services.settings.auth.cookie_name, path="/")
        response.del_cookie(REFRESH_COOKIE, path="/tenancy/")
        return response


async def _body(request: web.Request) -> dict:
    if request.content_type == "application/json":
        body = await json_body(request)
        return body if isinstance(body, dict) else {}
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return dict(await request.post())
    return {}

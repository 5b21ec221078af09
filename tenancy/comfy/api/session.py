"""The guard's own routes under /tenancy/: tokens, browser login, who am I and my queue, signed downloads, health."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

from aiohttp import web

from ... import identity, signed
from ...admission import quota_day
from ...read_back import owner_in
from ...records import Principal, RateLimit
from ...refusal import Refusal
from ...routes import TABLE, route_class
from ...store import StoreUnavailable
from ...usage import usage_row
from .. import http
from ..middleware import PRINCIPAL_KEY, STALE, Guard
from ..surfaces.files import real_location
from .admin.queue import live_queue

LOGIN_PAGE = Path(__file__).resolve().parents[2] / "web" / "login.html"
REFRESH_COOKIE = "tenancy_refresh"


def add_routes(routes: web.RouteTableDef, guard: Guard) -> None:
    api = TenancyApi(guard)
    routes.get("/tenancy/health")(api.health)
    routes.get("/tenancy/login")(api.login_page)
    routes.post("/tenancy/login")(api.login)
    routes.post("/tenancy/token")(api.token)
    routes.post("/tenancy/refresh")(api.refresh)
    routes.post("/tenancy/logout")(api.logout)
    routes.get("/tenancy/me")(api.me)
    routes.get("/tenancy/queue")(api.own_queue)
    routes.get("/tenancy/files/{token}")(api.file)
    routes.get("/tenancy/outputs/{prompt_id}")(api.outputs)
    routes.get("/tenancy/admin/routes")(api.route_report)
    routes.get("/tenancy/metrics")(api.metrics)


class TenancyApi:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def health(self, request: web.Request) -> web.Response:
        """ok, or degraded (503) while the store does not answer or writes wait in the outbox for it, or (with
        outputs in a bucket) while the bucket does not answer or uploads wait for it."""
        outbox, uploads = self.guard.accounting.outbox, self.guard.uploads
        try:
            await self.guard.store.ping()
            healthy = not outbox.error and uploads.healthy
        except Exception:  # any store failure is "degraded"; details stay in the log
            healthy = False
        if healthy:
            return web.json_response({"status": "ok"})
        body = {"status": "degraded", "backlog": outbox.backlog}
        if uploads.outbox is not None:
            body["upload_backlog"] = uploads.backlog
        return web.json_response(body, status=503)

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(LOGIN_PAGE, headers={"Cache-Control": "no-store"})

    # -- credentials -> tokens ---------------------------------------------------------------------------
    async def _check_credentials(self, request: web.Request, body: dict) -> tuple[str, str | None, str]:
        """(subject, tenant, role) for an API key or a username + password, throttled per IP and account."""
        parts = identity.split_api_key(str(body.get("api_key", "")))
        account = str(body.get("username") or (parts[0] if parts else ""))
        # Per IP these routes are limited by the middleware (ip_requests_per_minute); per account, strictly.
        per_minute = self.guard.settings.auth.login_attempts_per_minute
        await self.guard.rate_limit(RateLimit.per_minute(f"login-account:{account}", per_minute))
        if body.get("api_key"):
            principal = await self.guard.auth.from_api_key(str(body["api_key"]))
            return principal.subject, principal.tenant, principal.role
        account = await self.guard.store.get_account(account)
        if not identity.check_password(account.password_hash if account else None, str(body.get("password", ""))):
            raise Refusal(401, "invalid_credentials", "wrong username or password")
        if account.disabled:
            raise Refusal(401, "account_disabled", "this account is disabled")
        if account.tenant is not None:
            identity.require_active(await self.guard.store.get_tenant(account.tenant), account.tenant)
        return f"account:{account.username}", account.tenant, account.role

    async def _issue(self, subject: str, tenant: str | None, role: str, family: str | None = None) -> dict:
        settings = self.guard.tokens
        access, claims = identity.mint_access(settings, subject, tenant, role)
        refresh, record = identity.new_refresh(settings, subject, tenant, role, family)
        await self.guard.store.put_refresh(record)
        return {"access_token": access, "token_type": "Bearer", "expires_in": claims["exp"] - claims["iat"],
                "refresh_token": refresh, "tenant": tenant, "role": role}

    async def token(self, request: web.Request) -> web.Response:
        body = await _body(request)
        header = request.headers.get("Authorization", "")
        if not body.get("api_key") and header.lower().startswith("bearer "):
            body["api_key"] = header[7:].strip()
        subject, tenant, role = await self._check_credentials(request, body)
        return web.json_response(await self._issue(subject, tenant, role))

    async def refresh(self, request: web.Request) -> web.Response:
        body = await _body(request)
        presented = str(body.get("refresh_token") or request.cookies.get(REFRESH_COOKIE, ""))
        if not presented.isascii():
            raise Refusal(401, "invalid_refresh_token", "malformed refresh token")
        outcome, record = await self.guard.store.use_refresh(identity.digest(presented), time.time())
        if outcome == "reused":
            self.guard.audit.record(tenant=record.tenant, principal=record.subject, ip=request.remote,
                                    route="POST /tenancy/refresh", decision="refuse", reason="refresh_reused")
            raise Refusal(401, "refresh_reused", "this refresh token was already used; the session is revoked")
        if outcome != "ok":
            raise Refusal(401, "invalid_refresh_token", "unknown, expired or revoked refresh token")
        await self._still_valid(record.subject, record.tenant)
        issued = await self._issue(record.subject, record.tenant, record.role, record.family)
        response = web.json_response(issued)
        if REFRESH_COOKIE in request.cookies:
            self._set_cookies(request, response, issued)
        return response

    async def _still_valid(self, subject: str, tenant_id: str | None) -> None:
        await self.guard.auth.check_subject(subject)
        if tenant_id is not None:
            identity.require_active(await self.guard.store.get_tenant(tenant_id), tenant_id)

    # -- browser session -----------------------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.Response:
        """Sets the session cookies; `next` in the answer is where the login page goes then: the `next` it sent
        when that is a path on this site (never another host: no open redirect), otherwise the editor."""
        body = await _body(request)
        subject, tenant, role = await self._check_credentials(request, body)
        issued = await self._issue(subject, tenant, role)
        response = web.json_response({"tenant": tenant, "role": role, "expires_in": issued["expires_in"],
                                      "next": http.safe_next(str(body.get("next") or ""))})
        self._set_cookies(request, response, issued)
        self.guard.audit.record(tenant=tenant, principal=subject, ip=request.remote, route="POST /tenancy/login",
                                decision="allow")
        return response

    def _set_cookies(self, request: web.Request, response: web.Response, issued: dict) -> None:
        auth = self.guard.settings.auth
        secure = auth.cookie_secure == "always" or (auth.cookie_secure == "auto" and request.secure)
        response.set_cookie(auth.cookie_name, issued["access_token"], max_age=issued["expires_in"], path="/",
                            httponly=True, samesite="Lax", secure=secure)
        response.set_cookie(REFRESH_COOKIE, issued["refresh_token"], max_age=auth.refresh_ttl_s,
                            path="/tenancy/", httponly=True, samesite="Strict", secure=secure)

    async def logout(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL_KEY]
        if principal.via in ("jwt", "cookie") and principal.expires:
            await self.guard.store.revoke_jti(principal.credential, principal.expires)
        presented = str(request.cookies.get(REFRESH_COOKIE) or (await _body(request)).get("refresh_token") or "")
        if presented and presented.isascii():
            _, record = await self.guard.store.use_refresh(identity.digest(presented), time.time())
            if record is not None:
                await self.guard.store.revoke_family(record.family)
        response = web.json_response({"logged_out": True})
        response.del_cookie(self.guard.settings.auth.cookie_name, path="/")
        response.del_cookie(REFRESH_COOKIE, path="/tenancy/")
        return response

    async def me(self, request: web.Request) -> web.Response:
        """Who the caller is and what is left today; `stale` while the store cannot be asked (usage then null)."""
        principal: Principal = request[PRINCIPAL_KEY]
        plan = self.guard.plan_of(principal)
        usage, stale = None, bool(request.get(STALE))
        if plan is not None:
            today = quota_day(time.time(), plan.timezone)
            try:
                current = await self.guard.store.usage(principal.tenant, today)
            except StoreUnavailable:
                stale = True
            else:
                usage = {**usage_row(today, current, plan.daily_seconds), "active": current.active}
        return web.json_response({
            "tenant": principal.tenant, "plan": principal.plan, "role": principal.role,
            "subject": principal.subject, "via": principal.via, "usage": usage, "session_expires": principal.expires,
            "limits": dataclasses.asdict(plan) if plan else None, "stale": stale})

    async def own_queue(self, request: web.Request) -> web.Response:
        """A tenant's own queued and running prompts, with their place in the whole queue."""
        principal: Principal = request[PRINCIPAL_KEY]
        running, pending = live_queue(self.guard)

        def mine(item: dict) -> bool:
            return principal.is_admin or item["tenant"] == principal.tenant

        keep = ("prompt_id", "state", "position", "number", "admitted", "started")
        return web.json_response({
            "running": [{k: i.get(k) for k in keep} for i in running if mine(i)],
            "pending": [{k: i.get(k) for k in keep} for i in pending if mine(i)],
            "queue_length": len(pending), "running_count": len(running)})

    async def metrics(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL_KEY]
        if not principal.is_admin and request.remote not in self.guard.settings.metrics_allow:
            raise Refusal(403, "admin_only", "metrics are for operators and the configured scrapers")
        self.guard.metrics.outbox_backlog.set(self.guard.accounting.outbox.backlog)
        self.guard.metrics.output_upload_backlog.set(self.guard.uploads.backlog)
        with contextlib.suppress(StoreUnavailable):  # during an outage the other metrics matter most
            await self._sample_quotas()
        return web.Response(body=self.guard.metrics.exposition(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _sample_quotas(self) -> None:
        now = time.time()
        for tenant in await self.guard.store.list_tenants():
            plan = self.guard.settings.plans.get(tenant.plan)
            if plan is None:
                continue
            usage = await self.guard.store.usage(tenant.id, quota_day(now, plan.timezone))
            label = self.guard.metrics.tenant_label(tenant.id)
            self.guard.metrics.quota_used.labels(label).set(usage.used)
            self.guard.metrics.quota_held.labels(label).set(usage.held)

    # -- downloads -----------------------------------------------------------------------------------------
    async def file(self, request: web.Request) -> web.StreamResponse:
        grant = signed.verify(self.guard.file_secret, request.match_info["token"])
        if grant is None:
            raise Refusal(403, "invalid_signature", "the download link is invalid or has expired")
        folder, sub, name = await real_location(self.guard, None, grant.folder, grant.subfolder, grant.filename)
        redirect = await self.guard.uploads.redirect(request.method, grant.tenant, (folder, sub, name), attachment=True)
        if redirect is not None:
            return redirect
        path = self.guard.folders[folder] / sub / name
        if not path.is_file():
            raise Refusal(404, "not_found", "the file no longer exists")
        return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def outputs(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL_KEY]
        prompt_id = request.match_info["prompt_id"]
        entry = self.guard.server.prompt_queue.get_history(prompt_id=prompt_id).get(prompt_id)
        owner = owner_in(entry["prompt"][3]) if entry else None
        if entry is None or (not principal.is_admin and owner != principal.tenant):
            raise Refusal(404, "not_found", "no such prompt among yours")
        expires = int(time.time()) + self.guard.settings.signed_url_ttl_s
        files = []
        for node_id, items in (entry.get("outputs") or {}).items():
            for kind, refs in items.items() if isinstance(items, dict) else ():
                for ref in refs if isinstance(refs, list) else ():
                    if isinstance(ref, dict) and "filename" in ref:
                        grant = signed.FileGrant(owner, ref.get("type", "output"), ref.get("subfolder", ""),
                                                 ref["filename"], expires)
                        token = signed.sign(self.guard.file_secret, grant)
                        files.append({"node": node_id, "kind": kind, "filename": ref["filename"],
                                      "url": f"/tenancy/files/{token}", "expires": expires})
        return web.json_response({"prompt_id": prompt_id, "files": files})

    # -- operators -------------------------------------------------------------------------------------------
    async def route_report(self, request: web.Request) -> web.Response:
        """Every (method, pattern) of the live router with its class; `explicit` false means defaulted."""
        report, seen = [], set()
        for resource in request.app.router.resources():
            for method, pattern in _resource_routes(resource, self.guard):
                cls, explicit = route_class(method, pattern, self.guard.route_overrides)
                if (method, pattern) not in seen:
                    seen.add((method, pattern))
                    report.append({"method": method, "pattern": pattern, "class": cls, "explicit": explicit})
        return web.json_response({"routes": report, "table_size": len(TABLE)})


def _resource_routes(resource, guard: Guard):
    app = getattr(resource, "_app", None)
    if app is not None:  # a sub-application (e.g. /internal): its routes carry the prefix already
        for inner in app.router.resources():
            yield from _resource_routes(inner, guard)
        return
    canonical = resource.canonical
    if isinstance(resource, web.StaticResource):
        yield "GET", canonical.rstrip("/") + "/*"
        return
    for route in resource:
        if route.method != "HEAD":
            yield route.method, canonical


async def _body(request: web.Request) -> dict:
    if request.content_type == "application/json":
        body = await http.json_body(request)
        return body if isinstance(body, dict) else {}
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return dict(await request.post())
    return {}

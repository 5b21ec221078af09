"""The guard middleware: classify the route, identify the caller, authorize, then hand the request to the
surface that confines it (or straight to ComfyUI when the route needs no confinement)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from aiohttp import web

from ..audit import AuditLog
from ..config import Config
from ..history_index import HistoryIndex
from ..identity import Authenticator, split_api_key, token_settings
from ..metrics import Metrics, TimedStore
from ..queue_index import QueueIndex
from ..records import ANONYMOUS, Principal, RateLimit
from ..refusal import Refusal, rate_limited
from ..routes import PUBLIC, allowed, normalise, normalise_overrides, route_class
from ..store import Store, StoreUnavailable
from . import http
from .surfaces.user_data import COMFY_USER_HEADER, comfy_user

log = logging.getLogger("tenancy")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Surface = Callable[[web.Request, Handler, Principal], Awaitable[web.StreamResponse]]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CREDENTIAL_ROUTES = ("/tenancy/login", "/tenancy/token", "/tenancy/refresh", "/api/tenancy/")
PRINCIPAL_KEY = "tenancy.principal"
AUDITED = "tenancy.audited"  # set when a surface wrote the request's audit line itself
STALE = "tenancy.stale"  # set when the caller was recognised from memory because the store is unreachable
LOGIN_PAGE = "/tenancy/login"
KNOWN_ROUTES = 1024
KNOWN_PROMPTS = 100_000  # prompts whose owner (or guard outcome) is kept in memory: ~15 MB at most


class Route(NamedTuple):
    pattern: str | None  # the router's pattern; None when nothing matched
    key: str  # the route table's key for it
    cls: str  # public | tenant | admin
    surface: Surface | None  # what confines the route for a tenant, if anything


def route_pattern(resource) -> str | None:
    if resource is None:
        return None
    canonical = resource.canonical
    if isinstance(resource, web.StaticResource):
        canonical = canonical.rstrip("/") + "/*"
    return canonical  # sub-application routes carry their prefix already


def _surface_method(method: str) -> str:
    """aiohttp answers HEAD with a GET route's handler: it is confined by the GET surface (a HEAD of /view would
    otherwise tell whether another tenant's file exists, and its size)."""
    return "GET" if method == "HEAD" else method


class RecentPrompts(dict):
    """prompt_id -> a value, for the `limit` prompts most recently remembered: a server up for months would
    otherwise keep every prompt it ever saw. The oldest tenth goes when full, so queued and running prompts stay."""

    def __init__(self, limit: int = KNOWN_PROMPTS) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, prompt_id: str, value: str) -> None:
        if len(self) >= self.limit and prompt_id not in self:
            for stale in list(itertools.islice(self, max(self.limit // 10, 1))):
                del self[stale]
        self[prompt_id] = value


class Guard:
    def __init__(self, server, settings: Config, store: Store, folders: dict[str, Path]) -> None:
        self.server = server
        self.settings = settings
        self.route_overrides = normalise_overrides(settings.routes)
        self.metrics = Metrics(settings.metrics_top_tenants)
        self.store = TimedStore(store, self.metrics)
        self.folders = folders  # input / output / temp roots
        self.tokens = token_settings(settings)
        self.auth = Authenticator(self.store, self.tokens)
        self.audit = AuditLog(settings.path(settings.audit.path), settings.audit.max_bytes, settings.audit.backups)
        self.outcomes = RecentPrompts()  # prompt_id -> outcome the guard decided (timeout, cancelled)
        self.history = HistoryIndex()  # tenant -> its prompt ids in ComfyUI's history, caught up on each read
        self.queued = QueueIndex()  # tenant -> its pending and running prompts, fed by the queue's changes
        from .execution.accounting import Accounting

        self.accounting = Accounting(self)
        from .execution.output_uploads import OutputUploads

        self.uploads = OutputUploads(self, self.accounting.outbox.path.with_suffix(".uploads.jsonl"))
        self.surfaces: dict[tuple[str, str], Surface] = {}
        # prompt_id -> tenant ("" for an admin's): a cache of the store, read by the websocket and log context
        self.owners = RecentPrompts()
        self.outputs = RecentPrompts()  # "folder/subfolder/name" -> tenant ("" admin) of files written here
        self.catalogue = None  # built on first need from ComfyUI's node definitions
        self._routes: dict[tuple[str, object], Route] = {}

    @property
    def file_secret(self) -> bytes:
        return b"files:" + self.tokens.signing_key

    # -- the middleware ------------------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = self.route(request)
        response = await self._guarded(request, handler, route)
        self.metrics.count_request(route.cls, response.status, request.get(PRINCIPAL_KEY, ANONYMOUS).tenant)
        return response

    async def _guarded(self, request: web.Request, handler: Handler, route: Route) -> web.StreamResponse:
        pattern, cls = route.pattern, route.cls
        try:
            if cls == PUBLIC and request.method == "POST" and (pattern or "").startswith(CREDENTIAL_ROUTES):
                await self.limit_ip(request)
            principal = await self.identify(request)
        except Refusal as refusal:
            if refusal.status != 401:  # throttled
                return self.refuse(request, ANONYMOUS, refusal)
            if cls != PUBLIC:  # a credential that is not acceptable
                return await self._unauthenticated(request, refusal)
            principal = ANONYMOUS
        except StoreUnavailable as exc:
            return self.refuse(request, ANONYMOUS, Refusal(503, "store_unavailable", str(exc), retry_after=5))
        if not principal.authenticated and route.key == "/" and http.wants_html(request):
            raise web.HTTPFound(LOGIN_PAGE)  # a browser without a session: the login page, not the editor
        if not allowed(cls, principal.authenticated, principal.is_admin):
            if not principal.authenticated:
                if http.wants_html(request):  # back to this page after signing in
                    raise web.HTTPFound(f"{LOGIN_PAGE}?next={quote(request.rel_url.path_qs, safe='')}")
                return await self._unauthenticated(request, Refusal(401, "unauthenticated",
                                                                    "log in or send `Authorization: Bearer <key>`"))
            return self.refuse(request, principal, Refusal(403, "admin_only", "this route is for operators"))
        problem = self.cross_site(request, principal)
        if problem:
            return self.refuse(request, principal, problem)
        request[PRINCIPAL_KEY] = principal
        self.as_comfy_user(request, principal)
        try:
            if route.surface is not None and principal.authenticated:
                response = await route.surface(request, handler, principal)
            else:
                response = await handler(request)
        except Refusal as refusal:
            return self.refuse(request, principal, refusal)
        except StoreUnavailable as exc:
            return self.refuse(request, principal, Refusal(503, "store_unavailable", str(exc), retry_after=5))
        if request.method not in SAFE_METHODS and cls != PUBLIC and AUDITED not in request:
            self.record(request, principal, "allow", status=getattr(response, "status", None))
        return response

    def as_comfy_user(self, request: web.Request, principal: Principal) -> None:
        """ComfyUI's own per-user separation (user data, settings, asset owners) on every route, with the user
        taken from the identity: the client's `comfy-user` is replaced, and removed for anonymous callers."""
        user = comfy_user(principal) if principal.authenticated else None
        if user is not None:
            users = self.server.user_manager.users
            if user not in users:
                users[user] = user
        if user is not None or COMFY_USER_HEADER in request.headers:
            http.replace_header(request, COMFY_USER_HEADER, user)

    async def _unauthenticated(self, request: web.Request, refusal: Refusal) -> web.Response:
        """Unauthenticated callers and bad credentials count against the caller's IP."""
        try:
            await self.limit_ip(request)
        except Refusal as throttled:
            refusal = throttled
        except StoreUnavailable:
            pass
        return self.refuse(request, ANONYMOUS, refusal)

    async def limit_ip(self, request: web.Request) -> None:
        await self.rate_limit(RateLimit.per_minute(f"ip:{request.remote}", self.settings.ip_requests_per_minute))

    async def rate_limit(self, limit: RateLimit) -> None:
        """GCRA in the store (shared by every instance); a Refusal with the exact Retry-After when over."""
        wait = await self.store.rate_limit(limit.key, limit.interval_s, limit.burst)
        if wait > 0:
            raise rate_limited(wait)

    def route(self, request: web.Request) -> Route:
        """What the guard knows of the matched route: worked out once per method and router resource."""
        info = request.match_info
        resource = None
        if getattr(info, "http_exception", None) is None and info.route is not None:
            resource = info.route.resource
        key = (request.method, resource)
        route = self._routes.get(key)
        if route is None:
            if len(self._routes) >= KNOWN_ROUTES:  # clients choose methods: bounded
                self._routes.clear()
            pattern = route_pattern(resource)
            table_key = normalise(pattern or "")
            route = self._routes[key] = Route(pattern, table_key,
                                              route_class(request.method, pattern, self.route_overrides)[0],
                                              self.surfaces.get((_surface_method(request.method), table_key)))
        return route

    async def identify(self, request: web.Request) -> Principal:
        """The caller; while the store is unreachable, reads are served to credentials it vouched for before
        (the request is marked STALE)."""
        presented = self.credential(request)
        if presented is None:
            return ANONYMOUS
        via, credential = presented
        try:
            if via == "api_key":
                return await self.auth.from_api_key(credential)
            return await self.auth.from_access_token(credential, via=via)
        except StoreUnavailable:
            known = self.auth.last_accepted(via, credential) if request.method in SAFE_METHODS else None
            if known is None:
                raise
            request[STALE] = True
            return known

    def credential(self, request: web.Request) -> tuple[str, str] | None:
        """(api_key | jwt | cookie, the credential) the request presents, if any."""
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            credential = header[7:].strip()
            return ("api_key" if split_api_key(credential) else "jwt"), credential
        cookie = request.cookies.get(self.settings.auth.cookie_name)
        return ("cookie", cookie) if cookie else None

    def cross_site(self, request: web.Request, principal: Principal) -> Refusal | None:
        """Cookies ride along on cross-site requests: state changes and websockets need our own origin."""
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if principal.via != "cookie" or (request.method in SAFE_METHODS and not upgrade):
            return None
        if http.same_origin(request):
            return None
        return Refusal(403, "cross_site_request", "cookie-authenticated requests must come from this site")

    def refuse(self, request: web.Request, principal: Principal, refusal: Refusal) -> web.Response:
        self.record(request, principal, "refuse", reason=refusal.reason, status=refusal.status)
        return http.refusal_response(refusal)

    def record(self, request: web.Request, principal: Principal, decision: str, **details) -> None:
        """The request's line in the audit log: one per request, the surface's when it wrote a fuller one."""
        request[AUDITED] = True
        self.audit.record(tenant=principal.tenant, principal=principal.credential or None, ip=request.remote,
                          route=f"{request.method} {request.path}", decision=decision, **details)

    async def owner_of(self, prompt_id: str) -> str | None:
        """Tenant of a prompt ("" for an admin's), None when unknown."""
        if prompt_id in self.owners:
            return self.owners[prompt_id]
        owner = await self.store.prompt_owner(prompt_id)
        if owner is not None:
            self.owners.remember(prompt_id, owner)
        return owner

    def remember_output(self, folder: str, subfolder: str, filename: str, owner: str) -> None:
        self.outputs.remember(f"{folder}/{subfolder}/{filename}", owner)

    async def output_owner(self, folder: str, subfolder: str, filename: str) -> str | None:
        """Tenant of an output file ("" for an admin's), None when unknown: files written here are known at once
        (their index reaches the store through the outbox), others are asked of the store."""
        owner = self.outputs.get(f"{folder}/{subfolder}/{filename}")
        return owner if owner is not None else await self.store.output_owner(folder, subfolder, filename)

    def top_level_inputs(self) -> list[str]:
        root = self.folders["input"]
        return [p.name for p in root.iterdir() if p.is_file()] if root.is_dir() else []

    def plan_of(self, principal: Principal):
        if principal.plan is None:
            return None
        plans = self.settings.plans
        if principal.plan not in plans:
            raise Refusal(403, "unknown_plan", f"plan {principal.plan!r} is not configured")
        return plans[principal.plan]

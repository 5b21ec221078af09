"""The guard middleware: classify the route, identify the caller, authorize, then hand the request to the
surface that confines it (or straight to ComfyUI when the route needs no confinement)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import quote

from aiohttp import web

from ..identity import split_api_key
from ..records import ANONYMOUS, Principal
from ..refusal import Refusal
from ..routes import PUBLIC, allowed, normalise, route_class
from ..store import StoreUnavailable
from . import http
from .http import PRINCIPAL_KEY, STALE, Handler, Surface
from .services import GuardServices
from .surfaces.user_data import COMFY_USER_HEADER, comfy_user

log = logging.getLogger("tenancy")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CREDENTIAL_ROUTES = ("/tenancy/login", "/tenancy/token", "/tenancy/refresh", "/api/tenancy/")
LOGIN_PAGE = "/tenancy/login"
KNOWN_ROUTES = 1024


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


def _store_refusal(exc: StoreUnavailable) -> Refusal:
    return Refusal(503, "store_unavailable", str(exc), retry_after=5)


class Guard:
    """Route, identify, authorize, dispatch; what each surface does is the surface's."""

    def __init__(self, services: GuardServices, surfaces: Mapping[tuple[str, str], Surface]) -> None:
        self.services = services
        self.surfaces = surfaces  # keyed like routes.TABLE
        self._routes: dict[tuple[str, object], Route] = {}

    # -- the middleware ------------------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = self.route(request)
        response = await self._guarded(request, handler, route)
        self.services.metrics.count_request(route.cls, response.status,
                                            request.get(PRINCIPAL_KEY, ANONYMOUS).tenant)
        return response

    async def _guarded(self, request: web.Request, handler: Handler, route: Route) -> web.StreamResponse:
        principal = await self._identified(request, route)
        if isinstance(principal, web.StreamResponse):
            return principal
        refused = await self._authorized(request, route, principal)
        if refused is not None:
            return refused
        request[PRINCIPAL_KEY] = principal
        self.as_comfy_user(request, principal)
        return await self._dispatch(request, handler, route, principal)

    async def _identified(self, request: web.Request, route: Route) -> Principal | web.Response:
        """The caller, or the answer to a caller that cannot be let in: throttled, or a credential that is not
        acceptable on a route that needs one (on a public route it is ignored)."""
        try:
            if route.cls == PUBLIC and request.method == "POST" and (route.pattern or "").startswith(
                    CREDENTIAL_ROUTES):
                await self.services.limit_ip(request)
            return await self.identify(request)
        except Refusal as refusal:
            if refusal.status != 401:  # throttled
                return self.refuse(request, ANONYMOUS, refusal)
            if route.cls != PUBLIC:
                return await self._unauthenticated(request, refusal)
            return ANONYMOUS
        except StoreUnavailable as exc:
            return self.refuse(request, ANONYMOUS, _store_refusal(exc))

    async def _authorized(self, request: web.Request, route: Route, principal: Principal) -> web.Response | None:
        """None when the caller may use the route; otherwise the answer (a browser is sent to the login page)."""
        if not principal.authenticated and route.key == "/" and http.wants_html(request):
            raise web.HTTPFound(LOGIN_PAGE)  # a browser without a session: the login page, not the editor
        if not allowed(route.cls, principal.authenticated, principal.is_admin):
            if principal.authenticated:
                return self.refuse(request, principal, Refusal(403, "admin_only", "this route is for operators"))
            if http.wants_html(request):  # back to this page after signing in
                raise web.HTTPFound(f"{LOGIN_PAGE}?next={quote(request.rel_url.path_qs, safe='')}")
            return await self._unauthenticated(request, Refusal(401, "unauthenticated",
                                                                "log in or send `Authorization: Bearer <key>`"))
        problem = self.cross_site(request, principal)
        return self.refuse(request, principal, problem) if problem else None

    async def _dispatch(self, request: web.Request, handler: Handler, route: Route,
                        principal: Principal) -> web.StreamResponse:
        """The route's surface for a signed-in caller, ComfyUI's handler otherwise; refusals become answers and
        every allowed change gets its audit line."""
        try:
            if route.surface is not None and principal.authenticated:
                response = await route.surface(request, handler, principal)
            else:
                response = await handler(request)
        except Refusal as refusal:
            return self.refuse(request, principal, refusal)
        except StoreUnavailable as exc:
            return self.refuse(request, principal, _store_refusal(exc))
        if request.method not in SAFE_METHODS and route.cls != PUBLIC and http.AUDITED not in request:
            self.services.record(request, principal, "allow", status=getattr(response, "status", None))
        return response

    def as_comfy_user(self, request: web.Request, principal: Principal) -> None:
        """ComfyUI's own per-user separation (user data, settings, asset owners) on every route, with the user
        taken from the identity: the client's `comfy-user` is replaced, and removed for anonymous callers."""
        user = comfy_user(principal) if principal.authenticated else None
        if user is not None:
            users = self.services.server.user_manager.users
            if user not in users:
                users[user] = user
        if user is not None or COMFY_USER_HEADER in request.headers:
            http.replace_header(request, COMFY_USER_HEADER, user)

    async def _unauthenticated(self, request: web.Request, refusal: Refusal) -> web.Response:
        """Unauthenticated callers and bad credentials count against the caller's IP."""
        try:
            await self.services.limit_ip(request)
        except Refusal as throttled:
            refusal = throttled
        except StoreUnavailable:
            pass
        return self.refuse(request, ANONYMOUS, refusal)

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
                                              route_class(request.method, pattern, self.services.route_overrides)[0],
                                              self.surfaces.get((_surface_method(request.method), table_key)))
        return route

    async def identify(self, request: web.Request) -> Principal:
        """The caller; while the store is unreachable, reads are served to credentials it vouched for before
        (the request is marked STALE)."""
        presented = self.credential(request)
        if presented is None:
            return ANONYMOUS
        via, credential = presented
        auth = self.services.auth
        try:
            if via == "api_key":
                return await auth.from_api_key(credential)
            return await auth.from_access_token(credential, via=via)
        except StoreUnavailable:
            known = auth.last_accepted(via, credential) if request.method in SAFE_METHODS else None
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
        cookie = request.cookies.get(self.services.settings.auth.cookie_name)
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
        self.services.record(request, principal, "refuse", reason=refusal.reason, status=refusal.status)
        return http.refusal_response(refusal)


def bind(services: GuardServices, surfaces: Mapping[tuple[str, str], object]) -> dict[tuple[str, str], Surface]:
    """Each surface with the services it works with: what the middleware calls per route."""
    return {route: functools.partial(surface, services) for route, surface in surfaces.items()}

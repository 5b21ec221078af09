"""The plugin's own HTTP API under /tenancy/: sessions, who am I, downloads, operations, OpenID sign-in and the
operators' admin API (docs/ADMIN_API.md). Which class of caller may use each route is `tenancy.routes`'."""

from __future__ import annotations

from aiohttp import web

from ..services import GuardServices
from . import admin, oidc
from .downloads import Downloads
from .me import MeApi
from .ops import OpsApi
from .session import Sessions


def add_routes(routes: web.RouteTableDef, services: GuardServices) -> None:
    sessions, me, downloads, ops = Sessions(services), MeApi(services), Downloads(services), OpsApi(services)
    routes.get("/tenancy/health")(ops.health)
    routes.get("/tenancy/login")(sessions.login_page)
    routes.post("/tenancy/login")(sessions.login)
    routes.post("/tenancy/token")(sessions.token)
    routes.post("/tenancy/refresh")(sessions.refresh)
    routes.post("/tenancy/logout")(sessions.logout)
    routes.get("/tenancy/me")(me.me)
    routes.get("/tenancy/queue")(me.own_queue)
    routes.get("/tenancy/files/{token}")(downloads.file)
    routes.get("/tenancy/outputs/{prompt_id}")(downloads.outputs)
    routes.get("/tenancy/admin/routes")(ops.route_report)
    routes.get("/tenancy/metrics")(ops.metrics)
    admin.add_routes(routes, services)
    oidc.add_routes(routes, services)

"""/tenancy/admin: the operators' page, its script, and the configured plans it offers."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from ....installation import PLUGIN_ROOT
from .request import AdminHandlers, operator

WEB = PLUGIN_ROOT / "web"
ADMIN_PAGE = WEB / "admin.html"
ADMIN_SCRIPT = WEB / "admin.mjs"  # not `.js`: ComfyUI would load every .js of web/ into the editor
DOM_SCRIPT = WEB / "lib" / "dom.mjs"  # imported by admin.mjs (and by the editor's tenancy.js)


class PageApi(AdminHandlers):
    async def page(self, request: web.Request) -> web.StreamResponse:
        operator(request)
        return web.FileResponse(ADMIN_PAGE, headers={"Cache-Control": "no-store"})

    async def script(self, request: web.Request) -> web.StreamResponse:
        operator(request)
        return _module(ADMIN_SCRIPT)

    async def dom(self, request: web.Request) -> web.StreamResponse:
        operator(request)
        return _module(DOM_SCRIPT)

    async def plans(self, request: web.Request) -> web.Response:
        operator(request)
        return web.json_response({"plans": {name: dataclasses.asdict(plan)
                                            for name, plan in self.services.settings.plans.items()}})


def _module(path) -> web.FileResponse:
    return web.FileResponse(path, headers={"Cache-Control": "no-store",
                                           "Content-Type": "text/javascript; charset=utf-8"})

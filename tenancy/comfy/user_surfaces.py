"""Per-tenant ComfyUI user data (settings, saved workflows) and the redacted server facts tenants see."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from ..records import Principal
from . import http

COMFY_USER_PREFIX = "tenant-"


def comfy_user(principal: Principal) -> str:
    return f"{COMFY_USER_PREFIX}{principal.tenant}" if principal.tenant else "default"


async def as_comfy_user(guard, request: web.Request, handler, principal: Principal) -> web.StreamResponse:
    """ComfyUI's own per-user storage, with the user taken from the identity (the client's header ignored)."""
    user = comfy_user(principal)
    users = guard.server.user_manager.users
    if user not in users:
        users[user] = user
    headers = CIMultiDict(request.headers)
    headers["comfy-user"] = user
    return await handler(request.clone(headers=headers))


async def users(guard, request: web.Request, handler, principal: Principal) -> web.StreamResponse:
    """The editor asks who its users are; every caller is one user of its own ComfyUI."""
    return web.json_response({"storage": "server", "migrated": True})


async def system_stats(guard, request: web.Request, handler, principal: Principal) -> web.StreamResponse:
    response = await handler(request)
    answer = http.answer_json(response)
    if principal.is_admin or not isinstance(answer, dict):
        return response
    system = answer.get("system", {})
    # Blanked rather than dropped: the editor's error report reads these fields (`argv.join(" ")`).
    for secret, blank in (("argv", []), ("embedded_python", False), ("python_executable", ""),
                          ("comfyui_path", "")):
        if secret in system:
            system[secret] = blank
    for device in answer.get("devices", []):
        device.pop("index", None)
    return http.json_like(response, answer)

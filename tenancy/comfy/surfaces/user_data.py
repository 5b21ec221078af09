"""Per-tenant ComfyUI user data (settings, saved workflows) and the redacted server facts tenants see."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from aiohttp import web

from ...records import Principal
from .. import http
from ..http import Handler

if TYPE_CHECKING:
    from ..services import GuardServices

COMFY_USER_PREFIX = "tenant-"
COMFY_USER_HEADER = "comfy-user"


def comfy_user(principal: Principal) -> str:
    return f"{COMFY_USER_PREFIX}{principal.tenant}" if principal.tenant else "default"


def check_multi_user(server) -> None:
    """The guard gives each tenant its own ComfyUI user through `comfy-user`: refuse to start when this ComfyUI
    does not honour that header (no multi-user mode), rather than let every tenant share one user's data."""
    from aiohttp.test_utils import make_mocked_request

    probe = f"{COMFY_USER_PREFIX}probe-{uuid.uuid4().hex}"
    try:
        manager = server.user_manager
        manager.users[probe] = probe
        try:
            answered = manager.get_request_user_id(make_mocked_request("GET", "/userdata",
                                                                       headers={COMFY_USER_HEADER: probe}))
        finally:
            manager.users.pop(probe, None)
    except Exception as exc:  # any shape this probe does not know is a ComfyUI the guard cannot vouch for
        raise RuntimeError(f"cannot check ComfyUI's multi-user mode: {exc!r}") from None
    if answered != probe:
        raise RuntimeError("ComfyUI ignores the comfy-user header (no multi-user mode): tenants would share "
                           "one user's settings, workflows and assets")


async def users(services: GuardServices, request: web.Request, handler: Handler,
                principal: Principal) -> web.StreamResponse:
    """The editor asks who its users are; every caller is one user of its own ComfyUI."""
    return web.json_response({"storage": "server", "migrated": True})


async def read_user_data(services: GuardServices, request: web.Request, handler: Handler,
                         principal: Principal) -> web.StreamResponse:
    """A read of the tenant's user data (lists, files, settings): in a cluster, what the bucket has is on this
    disk first, wherever it was written."""
    await services.user_data.present(principal.tenant)
    return await handler(request)


async def write_user_data(services: GuardServices, request: web.Request, handler: Handler,
                          principal: Principal) -> web.StreamResponse:
    """A write of it (save, overwrite, move, delete, settings): in a cluster, synced first (ComfyUI's answers,
    such as a 409 for a name taken or a 404 for a file gone, are those of the tenant's data wherever it was
    written), and what the handler changed on this disk is in the bucket before the answer goes."""
    if services.user_data.enabled:
        await request.read()  # the body before the tenant's turn: a slow client holds up none of its requests
    async with services.user_data.writing(principal.tenant):
        return await handler(request)


async def system_stats(services: GuardServices, request: web.Request, handler: Handler,
                       principal: Principal) -> web.StreamResponse:
    response, answer = await http.tenant_copy(request, handler, principal)
    if answer is None:
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


async def features(services: GuardServices, request: web.Request, handler: Handler,
                   principal: Principal) -> web.StreamResponse:
    """Tenants are told the asset library is off (its routes are the operators'), so the editor does not use it."""
    response, answer = await http.tenant_copy(request, handler, principal)
    if answer is None:
        return response
    return http.json_like(response, tenant_features(answer))


def tenant_features(flags: dict) -> dict:
    """The server's feature flags as a tenant gets them (HTTP and the websocket's `feature_flags`)."""
    return dict(flags, assets=False)

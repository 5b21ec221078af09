"""The websocket's connect: each socket is named in its caller's namespace (`<tenant>:<client id>`), which is
what `execution.messages` delivers by. With the cluster queue, the socket's messages from other instances are
relayed to it while it is open (`execution.relay`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ...records import Principal
from ...workflow import namespaced_client_id
from .. import http
from ..http import Handler

if TYPE_CHECKING:
    from ..services import GuardServices


async def connect(services: GuardServices, request: web.Request, handler: Handler,
                  principal: Principal) -> web.StreamResponse:
    query = request.rel_url.query
    sid = namespaced_client_id(principal, query.get("clientId"))
    http.replace_query(request, {**query, "clientId": sid})
    if services.relay is None:
        return await handler(request)
    async with services.relay.socket(sid):  # ComfyUI's handler returns when the socket closes
        return await handler(request)

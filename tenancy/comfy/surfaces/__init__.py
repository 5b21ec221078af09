"""ComfyUI's own routes as a tenant gets them: each surface confines one route (its body, its answer) before
and after ComfyUI's handler runs.

SURFACES is keyed like `tenancy.routes.TABLE` (method, pattern): the table says who may call a route, this one
what a signed-in caller's request goes through; a route with no surface reaches ComfyUI as it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ...records import Principal
from ..http import Handler
from . import files, jobs, object_info, prompt, queue, user_data, websocket

if TYPE_CHECKING:
    from ..services import GuardServices

UnboundSurface = Callable[["GuardServices", web.Request, Handler, Principal], Awaitable[web.StreamResponse]]

SURFACES: dict[tuple[str, str], UnboundSurface] = {
    ("POST", "/prompt"): prompt.post_prompt,
    ("POST", "/upload/image"): files.upload,
    ("POST", "/upload/mask"): files.upload,
    ("GET", "/view"): files.view,
    ("GET", "/object_info"): object_info.object_info,
    ("GET", "/object_info/{node_class}"): object_info.object_info,
    ("GET", "/history"): queue.history,
    ("GET", "/history/{prompt_id}"): queue.history,
    ("POST", "/history"): queue.edit_history,
    ("GET", "/queue"): queue.queue,
    ("POST", "/queue"): queue.edit_queue,
    ("POST", "/interrupt"): queue.interrupt,
    ("GET", "/prompt"): queue.queue_status,
    ("GET", "/jobs"): jobs.jobs,
    ("GET", "/jobs/{job_id}"): jobs.job,
    ("POST", "/jobs/{job_id}/cancel"): jobs.cancel_job,
    ("POST", "/jobs/cancel"): jobs.cancel_jobs,
    ("GET", "/ws"): websocket.connect,
    ("GET", "/users"): user_data.users,
    # a tenant's ComfyUI user data: in a cluster, the same from every instance (through the bucket)
    ("GET", "/userdata"): user_data.read_user_data,
    ("GET", "/v2/userdata"): user_data.read_user_data,
    ("GET", "/userdata/{file}"): user_data.read_user_data,
    ("GET", "/settings"): user_data.read_user_data,
    ("GET", "/settings/{id}"): user_data.read_user_data,
    ("POST", "/userdata/{file}"): user_data.write_user_data,
    ("DELETE", "/userdata/{file}"): user_data.write_user_data,
    ("POST", "/userdata/{file}/move/{dest}"): user_data.write_user_data,
    ("POST", "/settings"): user_data.write_user_data,
    ("POST", "/settings/{id}"): user_data.write_user_data,
    ("GET", "/system_stats"): user_data.system_stats,
    ("GET", "/features"): user_data.features,
}

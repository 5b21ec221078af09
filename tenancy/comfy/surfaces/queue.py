"""History, queue, queue status and interrupt: each tenant sees and touches only the prompts it queued."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ...queue_index import QueueIndex
from ...read_back import posted_item, tenant_entry
from ...records import Principal
from ...refusal import Refusal
from .. import http
from ..http import Handler

if TYPE_CHECKING:
    from ..services import GuardServices


def _tenant_answer(principal: Principal) -> bool:
    return not principal.is_admin and principal.tenant is not None


async def history(services: GuardServices, request: web.Request, handler: Handler,
                  principal: Principal) -> web.StreamResponse:
    """A tenant's history is built from its own entries only (paged after filtering, as ComfyUI pages), read back
    by its own names; an operator reads ComfyUI's answer, with the guard's outcomes added."""
    if not _tenant_answer(principal):
        response = await handler(request)
        answer = http.answer_json(response)
        if not isinstance(answer, dict):
            return response
        return http.json_like(response, _with_outcomes(answer, services.outcomes))
    catalogue = await services.catalogue.of(request)
    tenant = principal.tenant
    prompt_id = request.match_info.get("prompt_id")
    if prompt_id is not None:
        found = await services.history.entry(tenant, prompt_id)
        entries = {prompt_id: found} if found is not None else {}
    else:
        entries = await services.history.page(tenant, _query_int(request, "max_items"), _query_int(request, "offset"))
    return web.json_response({pid: tenant_entry(recorded.entry, tenant, catalogue, recorded.outcome)
                              for pid, recorded in entries.items()})


def _with_outcomes(answer: dict, outcomes: dict) -> dict:
    return {pid: dict(entry, status=dict(entry.get("status") or {}, tenancy_outcome=outcomes[pid]))
            if pid in outcomes and isinstance(entry, dict) else entry for pid, entry in answer.items()}


def _query_int(request: web.Request, name: str) -> int | None:
    value = request.rel_url.query.get(name)
    try:
        return None if value is None else int(value)
    except ValueError:
        raise Refusal(400, "invalid_query", f"`{name}` must be a whole number") from None


async def queue(services: GuardServices, request: web.Request, handler: Handler,
                principal: Principal) -> web.StreamResponse:
    """A tenant's running and pending prompts, from its own entries of the queue index, as it posted them."""
    if not _tenant_answer(principal):
        return await handler(request)
    catalogue = await services.catalogue.of(request)
    running, pending = await own_queue(services, principal.tenant)
    return web.json_response({key: [posted_item(item, principal.tenant, catalogue) for item in items]
                              for key, items in (("queue_running", running), ("queue_pending", pending))})


async def own_queue(services: GuardServices, tenant: str | None) -> tuple[list, list]:
    """The owner's running and pending queue items (pending in the order they will run). With the cluster queue
    the running ones are read from Redis, in a thread; never under ComfyUI's queue mutex."""
    queued = services.queued
    if isinstance(queued, QueueIndex):  # this instance's queue, fed by its changes
        with services.server.prompt_queue.mutex:
            return queued.running(tenant), queued.pending(tenant)
    running = await queued.running_anywhere(tenant)
    return running, queued.pending(tenant)


async def running_of(services: GuardServices, tenant: str | None) -> list:
    """The owner's running queue items (in a cluster: on every instance, read in a thread)."""
    queued = services.queued
    return queued.running(tenant) if isinstance(queued, QueueIndex) else await queued.running_anywhere(tenant)


async def fresh_queue(services: GuardServices) -> None:
    """Before a change made by what the queue lists (deleting queued prompts): with the cluster queue, its listing
    is read anew, in a thread (ComfyUI's handlers then read it on the loop without a round trip)."""
    if not isinstance(services.queued, QueueIndex):
        await services.queued.fresh()


def _queue_items(services: GuardServices) -> tuple[list, list]:
    running, pending = services.server.prompt_queue.get_current_queue_volatile()
    return running, pending


def remaining_of(services: GuardServices, owner: str | None) -> int:
    """How many of the owner's (None: operators') prompts are queued or running (with the cluster queue, from its
    listing: at most poll_s old, a prompt queued here counted at once)."""
    with services.server.prompt_queue.mutex:
        return services.queued.remaining(owner)


async def remaining_now(services: GuardServices, owner: str | None) -> int:
    """`remaining_of` for one caller (its GET /prompt, a socket's first `status`): with the cluster queue, from a
    listing read after it asked (`ClusterQueueView.remaining_now`), so a client that queued through another
    instance is never told its queue is empty."""
    if isinstance(services.queued, QueueIndex):
        return remaining_of(services, owner)
    return await services.queued.remaining_now(owner)


def queue_info(remaining: int) -> dict:
    """ComfyUI's queue summary (`GET /prompt`, the websocket's `status`) for one caller's prompts."""
    return {"exec_info": {"queue_remaining": remaining}}


async def queue_status(services: GuardServices, request: web.Request, handler: Handler,
                       principal: Principal) -> web.StreamResponse:
    """GET /prompt: a tenant's own queue; another tenant's load is not its business."""
    if principal.is_admin:
        return await handler(request)
    return web.json_response(queue_info(await remaining_now(services, principal.tenant)))


async def edit_queue(services: GuardServices, request: web.Request, handler: Handler,
                     principal: Principal) -> web.StreamResponse:
    """Deleting queued prompts; their quota holds are refunded."""
    await fresh_queue(services)
    own = set(await _pending_ids(services, principal))
    response = await _edit(services, request, handler, principal, own)
    still = set(await _pending_ids(services, principal)) | {item[1] for item in _queue_items(services)[0]}
    for prompt_id in own - still:
        await services.accounting.released(prompt_id, "cancelled")
    return response


async def _pending_ids(services: GuardServices, principal: Principal) -> list[str]:
    """The pending prompts the caller may delete: a tenant's own (from the index); an operator, all."""
    pending = _queue_items(services)[1] if principal.is_admin else (await own_queue(services, principal.tenant))[1]
    return [item[1] for item in pending]


async def edit_history(services: GuardServices, request: web.Request, handler: Handler,
                       principal: Principal) -> web.StreamResponse:
    """Deleting from the caller's history, wherever it is kept (ComfyUI's handler deletes this instance's copies)."""
    if principal.is_admin:
        return await handler(request)
    own = set(await services.history.ids(principal.tenant))
    return await _edit(services, request, handler, principal, own,
                       lambda ids: services.history.forget(principal.tenant, ids))


async def _edit(services: GuardServices, request: web.Request, handler: Handler, principal: Principal,
                own: set[str], forget=None) -> web.StreamResponse:
    """`clear` becomes "delete all of mine"; `delete` may name only own prompts."""
    if principal.is_admin:
        return await handler(request)
    body = await http.json_body(request)
    if not isinstance(body, dict):
        raise Refusal(400, "invalid_body", "expected {\"clear\": true} or {\"delete\": [prompt ids]}")
    requested = body.get("delete", [])
    if not isinstance(requested, list):
        raise Refusal(400, "invalid_body", "`delete` must be a list of prompt ids")
    owners = services.owners
    foreign = [pid for pid in requested if pid not in own and await owners.of_prompt(str(pid)) != principal.tenant]
    if foreign:
        raise Refusal(403, "not_owner", f"not your prompts: {', '.join(map(str, foreign[:5]))}")
    ids = sorted(own) if body.get("clear") else [pid for pid in requested if pid in own]
    if not ids:
        return web.json_response({})
    if forget is not None:
        await forget(ids)
    http.replace_json_body(request, {"delete": ids})
    return await handler(request)


async def interrupt(services: GuardServices, request: web.Request, handler: Handler,
                    principal: Principal) -> web.StreamResponse:
    """Interrupts only the caller's own running prompt; the global form is the operators'. With the cluster queue
    a prompt running on another instance is interrupted there (`execution.relay`); an operator's global interrupt
    stays on the instance asked."""
    relay = services.relay
    if principal.is_admin:
        named = await _named_prompt(request) if relay is not None else None
        if named and named not in [item[1] for item in _queue_items(services)[0]]:
            await relay.interrupt(named)
            return web.json_response({})
        return await handler(request)
    body = await http.json_body(request) if request.can_read_body else {}
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    running = [item[1] for item in _queue_items(services)[0]]
    if prompt_id is None:
        mine = [pid for pid in running if await services.owners.of_prompt(pid) == principal.tenant]
        if not mine:
            if relay is not None:
                await relay.interrupt_running(principal.tenant)
            return web.json_response({})
        prompt_id = mine[0]
    elif await services.owners.of_prompt(str(prompt_id)) != principal.tenant:
        raise Refusal(403, "not_owner", "you can only interrupt your own prompts")
    if relay is not None and prompt_id not in running:
        await relay.interrupt(str(prompt_id))
        return web.json_response({})
    http.replace_json_body(request, {"prompt_id": prompt_id})
    return await handler(request)


async def _named_prompt(request: web.Request) -> str | None:
    """The prompt an operator's interrupt names, if its body says (ComfyUI reads a body it cannot parse as none)."""
    try:
        body = await http.json_body(request) if request.can_read_body else {}
    except Refusal:
        return None
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    return str(prompt_id) if prompt_id else None

"""`/api/jobs` (ComfyUI 0.33.0 and later): a tenant's jobs are its own prompts only, filtered, sorted and paged
with ComfyUI's semantics after filtering, built from the tenant's own history (`services.history`: this
instance's, or with the cluster queue the one every instance shares) and its queue, read back by its own names;
the server's whole history is never walked for a tenant. Operators get ComfyUI's
own answers."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from aiohttp import web

from ... import jobs_query
from ...read_back import posted_item, tenant_entry
from ...records import Principal
from ...refusal import Refusal
from .. import http
from ..http import Handler
from .queue import fresh_queue, own_queue

if TYPE_CHECKING:
    from ..services import GuardServices

JOBS_MODULE = "comfy_execution.jobs"  # where a ComfyUI with /api/jobs builds its job records


def _comfy_jobs():
    """ComfyUI's job records, where this ComfyUI has them (its server imported them for its /api/jobs)."""
    return sys.modules.get(JOBS_MODULE)


async def jobs(services: GuardServices, request: web.Request, handler: Handler,
               principal: Principal) -> web.StreamResponse:
    """GET /api/jobs: the tenant's own, with ComfyUI's filters, order and paging over them alone."""
    comfy_jobs = _comfy_jobs()
    if principal.is_admin or principal.tenant is None or comfy_jobs is None:
        return await handler(request)
    query = jobs_query.parse(request.rel_url.query, comfy_jobs.JobStatus.ALL)
    running, pending, history = await _own_records(services, request, principal.tenant,
                                                   with_history=_wants_history(query, comfy_jobs))
    found, total = comfy_jobs.get_all_jobs(running, pending, history, status_filter=query.statuses,
                                           workflow_id=query.workflow_id, sort_by=query.sort_by,
                                           sort_order=query.sort_order, limit=query.limit, offset=query.offset)
    return web.json_response({"jobs": found, "pagination": jobs_query.pagination(query, len(found), total)})


async def job(services: GuardServices, request: web.Request, handler: Handler,
              principal: Principal) -> web.StreamResponse:
    """GET /api/jobs/{id}: one of the tenant's own jobs, read back by its names; 404 for anyone else's."""
    comfy_jobs = _comfy_jobs()
    if principal.is_admin or principal.tenant is None or comfy_jobs is None:
        return await handler(request)
    job_id = request.match_info.get("job_id", "")
    running, pending, history = await _own_records(services, request, principal.tenant, only=job_id)
    found = comfy_jobs.get_job(job_id, running, pending, history)
    if found is None:
        raise Refusal(404, "not_found", "no such job among yours")
    return web.json_response(found)


def _wants_history(query: jobs_query.JobsQuery, comfy_jobs) -> bool:
    live = {comfy_jobs.JobStatus.PENDING, comfy_jobs.JobStatus.IN_PROGRESS}
    return query.statuses is None or not set(query.statuses) <= live


async def _own_records(services: GuardServices, request: web.Request, tenant: str, *, with_history: bool = True,
                       only: str | None = None) -> tuple[list, list, dict]:
    """The tenant's running and pending items and history entries (or just the one `only` names), as it posted
    them: what ComfyUI's job records are built from."""
    catalogue = await services.catalogue.of(request)
    running, pending = await own_queue(services, tenant)
    if only is not None:
        running, pending = [i for i in running if i[1] == only], [i for i in pending if i[1] == only]
    if only is not None:
        found = await services.history.entry(tenant, only)
        entries = {only: found} if found is not None else {}
    else:
        entries = await services.history.entries(tenant) if with_history else {}
    history = {pid: tenant_entry(recorded.entry, tenant, catalogue, recorded.outcome)
               for pid, recorded in entries.items()}
    return ([posted_item(item, tenant, catalogue) for item in running],
            [posted_item(item, tenant, catalogue) for item in pending], history)


async def cancel_job(services: GuardServices, request: web.Request, handler: Handler,
                     principal: Principal) -> web.StreamResponse:
    """POST /api/jobs/{id}/cancel: only the owner's."""
    job_id = request.match_info.get("job_id", "")
    if not principal.is_admin and await services.owners.of_prompt(job_id) != principal.tenant:
        raise Refusal(404, "not_found", "no such job among yours")
    relay = services.relay
    elsewhere = await relay.running_elsewhere([job_id]) if relay is not None else {}
    if job_id in elsewhere:  # it runs on another instance: interrupted there
        return web.json_response({"cancelled": await relay.interrupt_at(elsewhere[job_id], job_id)})
    await fresh_queue(services)  # ComfyUI's handler looks for it among the queued ones
    return await handler(request)


async def cancel_jobs(services: GuardServices, request: web.Request, handler: Handler,
                      principal: Principal) -> web.StreamResponse:
    """POST /api/jobs/cancel: every id must be the caller's own. With the cluster queue, jobs running on another
    instance are interrupted there, the others cancelled here (queued ones wherever they were accepted)."""
    if principal.is_admin and services.relay is None:
        return await handler(request)
    body = await http.json_body(request)
    ids = body.get("job_ids", []) if isinstance(body, dict) else []
    if not isinstance(ids, list):
        raise Refusal(403, "not_owner", "you can only cancel your own jobs")
    if not principal.is_admin and [j for j in ids if await services.owners.of_prompt(str(j)) != principal.tenant]:
        raise Refusal(403, "not_owner", "you can only cancel your own jobs")
    await fresh_queue(services)  # ComfyUI's handler looks for them among the queued ones
    elsewhere = await services.relay.running_elsewhere(ids) if services.relay is not None else {}
    if not elsewhere:
        return await handler(request)
    rest = [j for j in ids if not (isinstance(j, str) and j in elsewhere)]
    response = None
    if rest:  # first ComfyUI's own (queued ones before a worker the interrupts free could take them)
        http.replace_json_body(request, {**body, "job_ids": rest})
        response = await handler(request)
        if response.status != 200:
            return response
    heard = [await services.relay.interrupt_at(instance, job_id) for job_id, instance in elsewhere.items()]
    cancelled = any(heard) or bool(response is not None and (http.answer_json(response) or {}).get("cancelled"))
    return web.json_response({"cancelled": cancelled})

"""POST /prompt: the workflow policy, the on-disk checks it cannot do as pure text, ownership, audit."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from aiohttp import web

from ...paths import PathRefused, contained, tenant_root
from ...read_back import whole_number
from ...records import Principal, RateLimit
from ...refusal import Refusal, node_refusal
from ...workflow import Outcome, apply_policy
from .. import http
from ..execution.confinement import confined
from ..http import Handler

if TYPE_CHECKING:
    from ..services import GuardServices


async def post_prompt(services: GuardServices, request: web.Request, handler: Handler,
                      principal: Principal) -> web.StreamResponse:
    catalogue = await services.catalogue.of(request)  # before the body is read: it clones the request
    plan = None if principal.is_admin else services.plan_of(principal)
    limit = None if plan is None else RateLimit.per_minute(f"prompt:{principal.tenant}", plan.prompts_per_minute)
    try:
        body = await http.json_body(request)
        outcome = apply_policy(body, principal, plan, catalogue, services.settings.model_routing)
        check_files_on_disk(services, principal, outcome)
    except Refusal:
        if limit is not None:  # a refused workflow counts against the tenant's rate like an admitted one
            await services.rate_limit(limit)
        raise
    # Rate limit, ownership and the hold before ComfyUI sees it: its worker may start the prompt before this
    # handler returns. One store transaction on SQLite.
    await services.accounting.admit(principal, outcome.prompt_id, outcome.body, catalogue, limit)
    http.replace_json_body(request, outcome.body)
    # in a cluster: the tenant's uploads taken elsewhere are on this disk for ComfyUI's validation
    await services.inputs.present_async(principal.tenant)
    # ComfyUI validates the prompt as it will run it: names resolved inside the tenant's folders
    with confined(principal.tenant, outcome.body["prompt"], outcome.prompt_id):
        response = await handler(request)
    if response.status != 200:
        await services.accounting.released(outcome.prompt_id, "rejected")
    rewrites = [r.as_dict() for r in outcome.rewrites]
    services.record(request, principal, "allow" if response.status == 200 else "comfy_rejected",
                 prompt_id=outcome.prompt_id, rewrites=rewrites or None, status=response.status)
    return http.with_field(_whole_number(response), "tenancy", {"rewrites": rewrites})


def _whole_number(response: web.StreamResponse) -> web.StreamResponse:
    """ComfyUI answers the number it was given as a float; the guard's are whole, and clients type them so."""
    answer = http.answer_json(response) if response.status == 200 else None
    number = answer.get("number") if isinstance(answer, dict) else None
    if not (isinstance(number, float) and number.is_integer()):
        return response
    return http.json_like(response, dict(answer, number=whole_number(number)))


def check_files_on_disk(services: GuardServices, principal: Principal, outcome: Outcome) -> None:
    classes = {nid: node.get("class_type", "") for nid, node in outcome.body["prompt"].items()}
    for node_id, name, ref in outcome.files:
        try:
            real = contained(services.folders[ref.folder], ref.relative, principal.tenant)
        except PathRefused as exc:
            raise node_refusal(403, PathRefused.reason, node_id, classes[node_id], name,
                               f"{ref.relative!r} {exc}") from None
        if ref.is_folder and not os.path.isdir(real):  # nodes with such combos often skip ComfyUI's option check
            raise node_refusal(400, "no_such_folder", node_id, classes[node_id], name,
                               f"{virtual_name(principal.tenant, ref.relative)!r} is none of your folders")


def virtual_name(tenant: str, relative: str) -> str:
    return relative[len(tenant_root(tenant)) + 1:]

"""POST /prompt: the workflow policy, the on-disk checks it cannot do as pure text, ownership, audit."""

from __future__ import annotations

import os
import sys

from aiohttp import web

from ...catalogue import Catalogue
from ...paths import TENANTS_DIR, PathRefused, clean_name, contained, tenant_root
from ...read_back import whole_number
from ...records import Principal, RateLimit
from ...refusal import Refusal, node_refusal
from ...workflow import Outcome, apply_policy
from .. import http
from ..execution.confinement import confined


async def post_prompt(guard, request: web.Request, handler, principal: Principal) -> web.StreamResponse:
    catalogue = await node_catalogue(guard, request)  # before the body is read: it clones the request
    plan = None if principal.is_admin else guard.plan_of(principal)
    limit = None if plan is None else RateLimit.per_minute(f"prompt:{principal.tenant}", plan.prompts_per_minute)
    try:
        body = await http.json_body(request)
        outcome = apply_policy(body, principal, plan, catalogue, guard.settings.model_routing)
        check_files_on_disk(guard, principal, outcome)
    except Refusal:
        if limit is not None:  # a refused workflow counts against the tenant's rate like an admitted one
            await guard.rate_limit(limit)
        raise
    # Rate limit, ownership and the hold before ComfyUI sees it: its worker may start the prompt before this
    # handler returns. One store transaction on SQLite.
    await guard.accounting.admit(principal, outcome.prompt_id, outcome.body, catalogue, limit)
    http.replace_json_body(request, outcome.body)
    # ComfyUI validates the prompt as it will run it: names resolved inside the tenant's folders
    with confined(guard, principal.tenant, outcome.body["prompt"], outcome.prompt_id):
        response = await handler(request)
    if response.status != 200:
        await guard.accounting.released(outcome.prompt_id, "rejected")
    rewrites = [r.as_dict() for r in outcome.rewrites]
    guard.record(request, principal, "allow" if response.status == 200 else "comfy_rejected",
                 prompt_id=outcome.prompt_id, rewrites=rewrites or None, status=response.status)
    return http.with_field(_whole_number(response), "tenancy", {"rewrites": rewrites})


def _whole_number(response: web.StreamResponse) -> web.StreamResponse:
    """ComfyUI answers the number it was given as a float; the guard's are whole, and clients type them so."""
    answer = http.answer_json(response) if response.status == 200 else None
    number = answer.get("number") if isinstance(answer, dict) else None
    if not (isinstance(number, float) and number.is_integer()):
        return response
    return http.json_like(response, dict(answer, number=whole_number(number)))


def check_files_on_disk(guard, principal: Principal, outcome: Outcome) -> None:
    classes = {nid: node.get("class_type", "") for nid, node in outcome.body["prompt"].items()}
    for node_id, name, ref in outcome.files:
        try:
            real = contained(guard.folders[ref.folder], ref.relative, principal.tenant)
        except PathRefused as exc:
            raise node_refusal(403, PathRefused.reason, node_id, classes[node_id], name,
                               f"{ref.relative!r} {exc}") from None
        if ref.is_folder and not os.path.isdir(real):  # nodes with such combos often skip ComfyUI's option check
            raise node_refusal(400, "no_such_folder", node_id, classes[node_id], name,
                               f"{virtual_name(principal.tenant, ref.relative)!r} is none of your folders")


def virtual_name(tenant: str, relative: str) -> str:
    return relative[len(tenant_root(tenant)) + 1:]


async def node_catalogue(guard, request: web.Request) -> Catalogue:
    """Built once from ComfyUI's own /object_info answer plus what node classes declare."""
    if guard.catalogue is not None:
        return guard.catalogue
    object_info = await comfy_object_info(request)
    comfy_nodes = sys.modules.get("nodes")
    classes = getattr(comfy_nodes, "NODE_CLASS_MAPPINGS", {})
    meta = {name: getattr(cls, "TENANCY_META", None) for name, cls in classes.items()}
    guard.catalogue = Catalogue.build(object_info, {k: v for k, v in meta.items() if v},
                                      guard.settings.file_inputs, guard.top_level_inputs(),
                                      listed_subfolders(guard, object_info), guard.settings.output_inputs)
    return guard.catalogue


def listed_subfolders(guard, object_info: dict) -> dict[str, set[str]]:
    """folder -> which of the names that combos listing the tenants folder offer are subfolders of it (tells an
    input-folder combo from an output-folder one); one stat per offered name, once."""
    offered = set()
    for info in object_info.values():
        for section in ("required", "optional"):
            for entry in ((info.get("input") or {}).get(section) or {}).values():
                options = Catalogue.options_of(entry)
                if options and TENANTS_DIR in options:
                    offered.update(o for o in options if isinstance(o, str))
    found = {}
    for folder in ("input", "output"):
        root = guard.folders[folder]
        found[folder] = {name for name in offered if _is_subfolder(root, name)}
    return found


def _is_subfolder(root, name: str) -> bool:
    try:
        return (root / clean_name(name)).is_dir() and bool(name)
    except (PathRefused, OSError):
        return False


async def comfy_object_info(request: web.Request) -> dict:
    for resource in request.app.router.resources():
        if resource.canonical == "/object_info":
            for route in resource:
                if route.method == "GET":
                    response = await route.handler(request.clone(method="GET", rel_url="/object_info"))
                    return http.answer_json(response) or {}
    raise Refusal(500, "object_info_missing", "ComfyUI has no /object_info route")

"""Uploads and /view: each tenant sees its own folders as the roots, and reaches no one else's files."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import MultiDict

from ... import media
from ...outputs import owner_of, view_redirectable
from ...paths import (
    FOLDERS,
    PathRefused,
    clean_name,
    contained,
    contained_file,
    map_subfolder,
    split_annotation,
    tenant_root,
    virtual_subfolder,
)
from ...records import Principal, RateLimit
from ...refusal import Refusal
from .. import http
from ..http import Handler
from . import assets

if TYPE_CHECKING:
    from ..services import GuardServices

# `<scheme>:<rest>` file names ComfyUI may resolve itself rather than as a path (newer ComfyUI: `blake3:<hash>`
# through its asset table, which knows no tenants). Only hashes of the tenant's own files are served.
NAME_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
ASSET_HASH_SCHEMES = ("blake3:",)


async def upload(services: GuardServices, request: web.Request, handler: Handler,
                 principal: Principal) -> web.StreamResponse:
    form = await request.post()
    image = form.get("image")
    if principal.is_admin or not hasattr(image, "file"):
        return await handler(request)
    tenant = principal.tenant
    await services.rate_limit(RateLimit.per_minute(f"upload:{tenant}", services.plan_of(principal).uploads_per_minute))
    with PATH_REFUSALS:
        name = clean_name(image.filename)
        if "/" in name:
            raise Refusal(400, "invalid_filename", "the uploaded file name may not contain folders")
        media.check_upload(image.file, name, services.settings.max_upload_mb)
        fields = MultiDict(form)
        fields["type"] = "input"
        fields["subfolder"] = map_subfolder(tenant, form.get("subfolder", ""))
        contained(services.folders["input"], f"{fields['subfolder']}/{name}", tenant)
    if "original_ref" in form:
        fields["original_ref"] = json.dumps(await _own_ref(services, tenant, form["original_ref"]))
    http.replace_form(request, fields)
    # in a cluster: ComfyUI's renaming of a same-named upload must see the tenant's uploads taken elsewhere
    await services.inputs.present_async(tenant)
    response = await handler(request)
    answer = http.answer_json(response)
    if isinstance(answer, dict) and "subfolder" in answer:
        if response.status == 200 and isinstance(answer.get("name"), str):  # in a cluster: in the bucket first
            await services.inputs.shared(tenant, answer["subfolder"], answer["name"])
        answer["subfolder"] = virtual_subfolder(tenant, answer["subfolder"]) or ""
        return http.json_like(response, answer)
    return response


async def _own_ref(services: GuardServices, tenant: str, raw: str) -> dict:
    """The mask editor's `original_ref` must name one of the tenant's own files."""
    try:
        ref = json.loads(raw)
        filename, folder = ref["filename"], ref.get("type", "input")
    except (ValueError, KeyError, TypeError):
        raise Refusal(400, "invalid_original_ref", "original_ref must be JSON with a filename") from None
    real = await real_location(services, tenant, folder, ref.get("subfolder", ""), filename)
    return {"filename": real[2], "subfolder": real[1], "type": real[0]}


async def real_location(services: GuardServices, tenant: str | None, folder: str, subfolder: str,
                        filename: str) -> tuple[str, str, str]:
    """(folder, real subfolder, filename) of a file the caller names; refuses what is not theirs.

    A tenant's names are relative to its own folders, except files the output index attributes to it
    (outputs written before execution was confined), which keep their real names."""
    if folder not in FOLDERS:
        raise Refusal(400, "invalid_type", f"type must be one of {', '.join(FOLDERS)}")
    with PATH_REFUSALS:
        name = clean_name(filename)
        if not name:
            raise Refusal(400, "missing_filename", "name the file with `filename`")
        relative = f"{clean_name(subfolder or '')}/{name}".lstrip("/")
        sub, _, name = relative.rpartition("/")
        root = services.folders[folder]
        real_sub = f"{tenant_root(tenant)}/{sub}".rstrip("/") if tenant is not None else sub
        if tenant is not None:
            try:  # the tenant's own file by the name it uses: found without asking the output index
                if contained_file(root, f"{real_sub}/{name}", tenant):
                    return folder, real_sub, name
            except PathRefused:
                pass
        if tenant is None or await services.owners.of_output(folder, sub, name) == tenant:
            contained(root, relative)
            return folder, sub, name
        if folder == "temp" and not services.uploads.serves(folder):
            raise Refusal(404, "not_found", "no such preview among yours")
        contained(root, f"{real_sub}/{name}", tenant)
        return folder, real_sub, name


async def view(services: GuardServices, request: web.Request, handler: Handler,
               principal: Principal) -> web.StreamResponse:
    query = request.rel_url.query
    raw = query.get("filename", "")
    if NAME_SCHEME.match(raw) and not principal.is_admin:
        location = await owned_asset(services, principal.tenant, raw) if raw.startswith(ASSET_HASH_SCHEMES) else None
        if location is None:
            raise Refusal(404, "not_found", "no such file among yours")
        http.replace_query(request, {**query, "type": location[0], "subfolder": location[1], "filename": location[2]})
        return await handler(request)
    filename, annotated = split_annotation(raw)
    folder = annotated or query.get("type", "output") or "output"
    location = await real_location(services, principal.tenant, folder, query.get("subfolder", ""), filename)
    if view_redirectable(query):
        days = await services.output_days(principal.tenant or owner_of(location[1]), principal)
        redirect = await services.uploads.redirect(request.method, principal.tenant, location, attachment=False,
                                                   days=days)
        if redirect is not None:
            return redirect
    http.replace_query(request, {**query, "type": location[0], "subfolder": location[1], "filename": location[2]})
    return await handler(request)


async def owned_asset(services: GuardServices, tenant: str, asset_hash: str) -> tuple[str, str, str] | None:
    """(folder, real subfolder, filename) of a file of the tenant's with this content hash, None when it has none:
    the asset table lists every copy of the content; one of them must be the tenant's (in its folders, or an
    output the index attributes to it)."""
    for path in await asyncio.to_thread(assets.files_with_hash, asset_hash):
        located = _in_folders(services.folders, path)
        if located is None:
            continue
        folder, relative = located
        sub, _, name = relative.rpartition("/")
        mine = folder != "temp" and virtual_subfolder(tenant, sub) is not None
        if not mine and await services.owners.of_output(folder, sub, name) != tenant:
            continue
        try:
            if contained_file(services.folders[folder], relative, tenant if mine else None):
                return folder, sub, name
        except PathRefused:
            continue
    return None


def _in_folders(folders: dict[str, Path], path: str) -> tuple[str, str] | None:
    """(folder, name relative to it) of a path inside input/, output/ or temp/; None elsewhere."""
    real = os.path.realpath(path)
    for folder in FOLDERS:
        root = os.path.realpath(folders[folder])
        if real.startswith(root.rstrip(os.sep) + os.sep):
            return folder, os.path.relpath(real, root).replace(os.sep, "/")
    return None


class _PathRefusals:
    """`with PATH_REFUSALS:` a PathRefused becomes its Refusal. (A plain object, not a generator: /view goes
    through it on every request.)"""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is not None and issubclass(kind, PathRefused):
            raise exc.to_refusal() from None
        return False


PATH_REFUSALS = _PathRefusals()

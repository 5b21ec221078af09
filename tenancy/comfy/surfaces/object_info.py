"""/object_info as a tenant gets it: the file and folder combos list the tenant's own files, folders and
per-tenant items (voices, profiles) by the names it uses."""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ... import media, tenant_data
from ...paths import tenant_root
from ...records import Principal
from .. import http
from ..http import Handler

if TYPE_CHECKING:
    from ..services import GuardServices

MAX_LISTED = 5000


async def object_info(services: GuardServices, request: web.Request, handler: Handler,
                      principal: Principal) -> web.StreamResponse:
    response, answer = await http.tenant_copy(request, handler, principal)
    if answer is None:
        return response

    catalogue = await services.catalogue.of(request)
    files = tenant_files(services.folders["input"] / tenant_root(principal.tenant))
    tenancy_dir = Path(services.settings.base_dir)
    for class_type, info in answer.items():
        spec = catalogue.get(class_type)
        if spec is None:
            continue
        lists = {name: media.matching(files, spec.inputs[name].upload if name in spec.inputs else None)
                 for name in spec.file_inputs}
        lists.update({name: tenant_data.list_items(tenancy_dir, principal.tenant, kind)
                      for name, kind in spec.meta.get("tenant_lists", {}).items()})
        lists.update({name: tenant_folders(services.folders[folder] / tenant_root(principal.tenant))
                      for name, folder in spec.folder_inputs.items()})
        for name, names in lists.items():
            for section in ("required", "optional"):
                entry = (info.get("input", {}).get(section) or {}).get(name)
                if entry is not None:
                    _replace_options(entry, names)
    return http.json_like(response, answer)


def _replace_options(entry: list, names: list[str]) -> None:
    """Put the tenant's names into a combo, in whichever shape ComfyUI answered (told apart by shape, not version):
    `[[names], {...}]` (classic nodes) or `["COMBO", {"options": [names], ...}]` (V3 schema nodes); the other fields
    (upload flags, `multiselect`, ...) stay as they are. An entry of another shape is left alone."""
    if not isinstance(entry, list) or not entry:
        return
    if isinstance(entry[0], list):
        entry[0] = names
    elif len(entry) > 1 and isinstance(entry[1], dict) and "options" in entry[1]:
        entry[1]["options"] = names


def tenant_files(root: Path) -> list[str]:
    """The tenant's input files by the names it uses (relative to its folder), newest last, bounded."""
    found: list[str] = []
    for rel, directory, names in _walked(root):
        for name in names:
            if os.path.isfile(os.path.join(directory, name)):
                found.append(name if rel == "." else f"{rel}/{name}")
                if len(found) >= MAX_LISTED:
                    return found
    return found


def tenant_folders(root: Path) -> list[str]:
    """The tenant's subfolders by the names it uses (relative to its folder), sorted, bounded."""
    return sorted(islice((rel for rel, _, _ in _walked(root) if rel != "."), MAX_LISTED))


def _walked(root: Path):
    """(the folder's name relative to `root`, its path, its file names) for `root` and every folder below, in name
    order, hidden ones skipped; nothing when `root` does not exist."""
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        rel = os.path.relpath(directory, root).replace(os.sep, "/")
        yield rel, directory, sorted(name for name in names if not name.startswith("."))

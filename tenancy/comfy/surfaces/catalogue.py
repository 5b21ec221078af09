"""The node catalogue the workflow policy and the read-backs work with: built once, at the first request that
needs it, from ComfyUI's own /object_info answer plus what node classes declare (`TENANCY_META`)."""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web

from ...catalogue import Catalogue
from ...config import Config
from ...paths import TENANTS_DIR, PathRefused, clean_name
from ...refusal import Refusal
from .. import http

NOT_MODELS = frozenset({"custom_nodes", "configs"})  # folder_paths folders that hold no model files


class NodeCatalogue:
    """Holds the catalogue once built (every custom node has registered by the first request)."""

    def __init__(self, settings: Config, folders: dict[str, Path]) -> None:
        self.settings = settings
        self.folders = folders
        self.built: Catalogue | None = None

    async def of(self, request: web.Request) -> Catalogue:
        """The catalogue; the first call asks ComfyUI's /object_info handler (it clones the request: call it
        before the body is read)."""
        if self.built is not None:
            return self.built
        object_info = await comfy_object_info(request)
        comfy_nodes = sys.modules.get("nodes")
        classes = getattr(comfy_nodes, "NODE_CLASS_MAPPINGS", {})
        meta = {name: getattr(cls, "TENANCY_META", None) for name, cls in classes.items()}
        self.built = Catalogue.build(object_info, {k: v for k, v in meta.items() if v}, self.settings.file_inputs,
                                     self.top_level_inputs(), listed_subfolders(self.folders, object_info),
                                     self.settings.output_inputs, self.model_files())
        return self.built

    def model_files(self) -> dict[str, list[str]]:
        """Model folder -> the files ComfyUI lists in it, when the cluster queue's model affinity needs to know
        which inputs name models (else nothing: no listing)."""
        cluster = self.settings.cluster
        if not (cluster.enabled and cluster.affinity_s > 0):
            return {}
        import folder_paths

        found = {}
        for folder in getattr(folder_paths, "folder_names_and_paths", {}):
            if folder in NOT_MODELS:
                continue
            try:
                found[folder] = list(folder_paths.get_filename_list(folder))
            except Exception:  # a pack's folder ComfyUI cannot list: no model inputs found in it
                continue
        return found

    def top_level_inputs(self) -> list[str]:
        root = self.folders["input"]
        return [p.name for p in root.iterdir() if p.is_file()] if root.is_dir() else []


def listed_subfolders(folders: dict[str, Path], object_info: dict) -> dict[str, set[str]]:
    """folder -> which of the names that combos listing the tenants folder offer are subfolders of it (tells an
    input-folder combo from an output-folder one); one stat per offered name, once."""
    offered = set()
    for info in object_info.values():
        for section in ("required", "optional"):
            for entry in ((info.get("input") or {}).get(section) or {}).values():
                options = Catalogue.options_of(entry)
                if options and TENANTS_DIR in options:
                    offered.update(o for o in options if isinstance(o, str))
    return {folder: {name for name in offered if _is_subfolder(folders[folder], name)}
            for folder in ("input", "output")}


def _is_subfolder(root: Path, name: str) -> bool:
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

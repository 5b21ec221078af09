"""The tenant whose prompt this thread validates or executes, and what the confinement found at start-up:
shared by the name resolvers, the cache keys and the file watch (`execution.confinement` wires them in)."""

from __future__ import annotations

import contextvars
import os
import sys
from dataclasses import dataclass, field

from ...audit import AuditLog
from ...confinement import REASON, Layout
from ...paths import FOLDERS


class ConfinementRefused(PermissionError):
    """A node reached for a path outside its tenant's folders. A PermissionError, so code that walks folders and
    skips unreadable ones (os.walk, glob) skips these too."""

    reason = REASON


@dataclass
class Execution:
    """The tenant whose prompt this context validates or executes."""

    audit: AuditLog | None  # where its refusals are recorded
    tenant: str
    prompt_id: str | None
    classes: dict[str, str]  # node id -> class_type
    layout: Layout
    refused: list[str] = field(default_factory=list)


current_execution: contextvars.ContextVar[Execution | None] = contextvars.ContextVar("tenancy_execution", default=None)
runtime: dict = {}  # what install() found: owners, audit log, ComfyUI's node context, trusted classes, layout


# -- the layout ---------------------------------------------------------------------------------------------

def layout() -> Layout:
    """Worked out once, at the first tenant prompt: by then every custom node has registered its model folders."""
    found = runtime.get("layout")
    if found is None:
        import folder_paths

        real = os.path.realpath
        shared = {folder: real(root(folder)) for folder in FOLDERS}
        private = {"user": real(folder_paths.get_user_directory()),
                   "tenancy": real(str(runtime["tenancy_dir"]))}
        read_only = {}
        for name, (paths, *_rest) in folder_paths.folder_names_and_paths.items():
            for index, path in enumerate(paths):
                read_only[f"{name}#{index}" if index else name] = real(path)
        found = runtime["layout"] = Layout(shared, private, read_only)
        given = {root(folder): shared[folder] for folder in FOLDERS}
        given[folder_paths.get_user_directory()] = private["user"]
        runtime["aliases"] = tuple((os.path.normpath(os.path.abspath(g)), r) for g, r in given.items()
                                    if os.path.normpath(os.path.abspath(g)) != r)
    return found


def root(folder: str) -> str:
    import folder_paths

    return getattr(folder_paths, f"get_{folder}_directory")()


# -- refusals -----------------------------------------------------------------------------------------------

def executing_node() -> tuple[str, str]:
    context = runtime.get("node_context")
    executing = context.get() if context is not None else None
    node_id = str(getattr(executing, "node_id", None) or "?")
    execution = current_execution.get()
    class_type = execution.classes.get(node_id) if execution else None
    return node_id, class_type or "?"  # an expanded node's class is not in the prompt


def trusted_node() -> bool:
    """Nodes of this package keep tenants apart themselves (voices, profiles, secrets): not refused."""
    _node_id, class_type = executing_node()
    classes = getattr(sys.modules.get("nodes"), "NODE_CLASS_MAPPINGS", {})
    return classes.get(class_type) in runtime.get("trusted", ())


def refuse(execution: Execution, what: str) -> ConfinementRefused:
    node_id, class_type = executing_node()
    message = f"{REASON}: node {node_id} ({class_type}): {what}"
    execution.refused.append(message)
    execution.audit.record(tenant=execution.tenant, prompt_id=execution.prompt_id, route="execution",
                                 decision="refuse", reason=REASON, node=node_id, class_type=class_type, detail=what)
    return ConfinementRefused(message)



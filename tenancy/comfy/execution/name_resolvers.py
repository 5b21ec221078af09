"""ComfyUI's name resolvers (`folder_paths`) while a tenant's prompt is validated or runs: names resolve inside
the tenant's folders, saves land in them, folder listings show only its own."""

from __future__ import annotations

import functools
import os

from ...confinement import READ, WRITE, decide, tenant_prefix, tenant_relative
from ...paths import FOLDERS, PathRefused, contained, split_annotation, tenant_root
from .tenant_execution import ConfinementRefused, Execution, current_execution, refuse, root


def _folder_of(directory: str) -> str | None:
    """`input` / `output` / `temp` when `directory` is that folder's root (as ComfyUI names it), else None."""
    for folder in FOLDERS:
        if directory == root(folder):
            return folder
    return None


def _resolve(execution: Execution, name: str, default_dir: str | None) -> str:
    text, annotated = split_annotation(name)
    base = root(annotated) if annotated else default_dir if default_dir is not None else root("input")
    try:
        if _folder_of(base) is not None:
            relative = tenant_relative(execution.tenant, text)
            contained(base, relative, execution.tenant)
            return os.path.join(base, relative)
    except PathRefused as exc:
        raise refuse(execution, f"{name!r} {exc}") from None
    path = os.path.join(base, text)
    reason = decide(execution.layout, execution.tenant, os.path.realpath(path), READ)
    if reason is not None:
        raise refuse(execution, f"{name!r}: {reason}")
    return path


def install(folder_paths) -> None:
    originals = {name: getattr(folder_paths, name) for name in
                 ("get_annotated_filepath", "exists_annotated_filepath", "get_save_image_path",
                  "get_input_subfolders") if hasattr(folder_paths, name)}

    def get_annotated_filepath(name, default_dir=None):
        execution = current_execution.get()
        if execution is None or not isinstance(name, str):
            return originals["get_annotated_filepath"](name, default_dir)
        return _resolve(execution, name, default_dir)

    def exists_annotated_filepath(name):
        execution = current_execution.get()
        if execution is None or not isinstance(name, str):
            return originals["exists_annotated_filepath"](name)
        try:
            return os.path.exists(_resolve(execution, name, None))
        except ConfinementRefused:
            return False

    def get_save_image_path(filename_prefix, output_dir, *args, **kwargs):
        execution = current_execution.get()
        if execution is not None:
            filename_prefix = _save_prefix(execution, filename_prefix, output_dir)
        return originals["get_save_image_path"](filename_prefix, output_dir, *args, **kwargs)

    def get_input_subfolders():
        execution = current_execution.get()
        if execution is None:
            return originals["get_input_subfolders"]()
        return _own_subfolders(execution)

    for name, wrapper in (("get_annotated_filepath", get_annotated_filepath),
                          ("exists_annotated_filepath", exists_annotated_filepath),
                          ("get_save_image_path", get_save_image_path),
                          ("get_input_subfolders", get_input_subfolders)):
        if name in originals:
            setattr(folder_paths, name, functools.wraps(originals[name])(wrapper))


def _save_prefix(execution: Execution, prefix, output_dir) -> str:
    """Into the tenant's folder when a node saves into a folder root (previews into temp/tenants/<t>/ too)."""
    try:
        if _folder_of(output_dir) is not None:
            return tenant_prefix(execution.tenant, prefix)
    except PathRefused as exc:
        raise refuse(execution, f"filename_prefix {prefix!r} {exc}") from None
    reason = decide(execution.layout, execution.tenant, os.path.realpath(output_dir), WRITE)
    if reason is not None:
        raise refuse(execution, reason)
    return prefix


def _own_subfolders(execution: Execution) -> list[str]:
    """The tenant's input folders by their real names (`tenants/<t>`, `tenants/<t>/sub`, ...)."""
    own = tenant_root(execution.tenant)
    top = os.path.join(root("input"), own)
    found = [own] if os.path.isdir(top) else []
    for directory, subdirs, _files in os.walk(top):
        subdirs.sort()
        relative = os.path.relpath(directory, top)
        if relative != ".":
            found.append(f"{own}/{relative.replace(os.sep, '/')}")
    return sorted(found)



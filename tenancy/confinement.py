"""What a tenant's running prompt may touch on disk: the rule the execution layer asks, as pure functions.

Tenant data lives in `<input|output|temp>/tenants/<tenant>/` and the tenancy folder's `tenants/<tenant>/`; the rest
of those folders and of ComfyUI's user folder is nobody's to reach from a tenant's prompt. Model folders are
readable and never writable. Everything else (the Python install, packages, /tmp) is not tenant data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from .paths import TENANTS_DIR, PathRefused, clean_name, tenant_root

READ, WRITE, LIST = "read", "write", "list"
REASON = "path_outside_tenant"
DEFAULT_PREFIX = "ComfyUI"


@dataclass(frozen=True)
class Layout:
    """Real (symlinks resolved) absolute folders, by the name a refusal shows for them."""

    shared: Mapping[str, str]  # input / output / temp: each tenant's part is <root>/tenants/<tenant>
    private: Mapping[str, str]  # ComfyUI's user folder, the tenancy folder: no tenant's, but tenancy's tenants/<t>
    read_only: Mapping[str, str]  # model folders (and the other folders ComfyUI lists models from)

    def tenant_folders(self, tenant: str) -> tuple[str, ...]:
        known = self._tenant_folders
        if tenant not in known:
            roots = [*self.shared.values(), self.private.get("tenancy")]
            known[tenant] = tuple(os.path.join(root, TENANTS_DIR, tenant) for root in roots if root)
        return known[tenant]

    @cached_property
    def _tenant_folders(self) -> dict[str, tuple[str, ...]]:
        return {}

    @cached_property
    def closed(self) -> tuple[str, ...]:
        """The folders of tenant data and of the server's own (shared and private roots), as path prefixes."""
        return tuple(root.rstrip(os.sep) + os.sep for root in (*self.shared.values(), *self.private.values()))

    @cached_property
    def watched(self) -> tuple[str, ...]:
        """Every folder the rule says anything about: one `startswith` tells a path that is in none of them."""
        return (*self.shared.values(), *self.private.values(), *self.read_only.values())


def decide(layout: Layout, tenant: str, path: str, access: str) -> str | None:
    """None when `tenant`'s prompt may `access` (read | write | list) the real absolute `path`, else why not."""
    if not path.startswith(layout.watched):
        return None  # the Python install, packages, /tmp: no tenant's data
    if any(_inside(path, folder) for folder in layout.tenant_folders(tenant)):
        return None
    for name, root in layout.shared.items():
        if path == root and access == LIST:
            return None  # top-level names only (`tenants`, the operator's files): ComfyUI's loaders list them
        if _inside(path, root):
            return f"{_verb(access)} {_shown(name, root, path)} is outside your folders"
    for name, root in layout.private.items():
        if _inside(path, root):
            return f"{_verb(access)} {_shown(name, root, path)} is outside your folders"
    if access == WRITE:
        for name, root in layout.read_only.items():
            if _inside(path, root):
                return f"{_verb(access)} {_shown(name, root, path)}: model folders are read-only"
    return None


def tenant_relative(tenant: str, name: object) -> str:
    """A file name as a node of `tenant` gives it -> the real name under a folder root (`tenants/<t>/...`).

    Names the guard already rewrote keep their `tenants/<t>/` prefix; a tenant's own names get it; names of other
    tenants' folders (or of `tenants` itself) and names that climb out are refused."""
    rest = _own_part(tenant, clean_name(name))
    return f"{tenant_root(tenant)}/{rest}" if rest else tenant_root(tenant)


def tenant_prefix(tenant: str, prefix: object) -> str:
    """An output `filename_prefix` (as ComfyUI's save nodes pass it on) -> one under the tenant's folder."""
    rest = _own_part(tenant, clean_name(prefix, allow_tokens=True))
    return f"{tenant_root(tenant)}/{rest or DEFAULT_PREFIX}"


def _own_part(tenant: str, cleaned: str) -> str:
    own = tenant_root(tenant)
    if cleaned == own or cleaned.startswith(own + "/"):
        return cleaned[len(own) + 1:]
    if cleaned == TENANTS_DIR or cleaned.startswith(TENANTS_DIR + "/"):
        raise PathRefused("names the folder of tenants")
    return cleaned


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _shown(name: str, root: str, path: str) -> str:
    """The path relative to the folder it lies in, never the server's absolute layout."""
    relative = os.path.relpath(path, root)
    return name if relative == "." else f"{name}/{relative}"


def _verb(access: str) -> str:
    return {READ: "reading", WRITE: "writing", LIST: "listing"}[access]

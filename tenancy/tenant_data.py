"""Where per-tenant data lives in the tenancy folder (profiles, voices), and which names a tenant may use.

Shared by the guard (to list a tenant's own items in the editor) and by nodes (to read and write them).
"""

from __future__ import annotations

from pathlib import Path

from .paths import PathRefused, clean_name
from .records import check_tenant_id

TENANTS = "tenants"
SHARED = "shared"
ITEM_SUFFIX = {"voices": ".voice"}


def tenant_dir(tenancy_dir: Path, tenant: str | None) -> Path:
    """A tenant's own folder; None (no guard, or an operator) means the global one."""
    return tenancy_dir / TENANTS / check_tenant_id(tenant) if tenant else tenancy_dir


def items_dir(tenancy_dir: Path, tenant: str | None, kind: str) -> Path:
    return tenant_dir(tenancy_dir, tenant) / kind


def shared_dir(tenancy_dir: Path, kind: str) -> Path:
    return tenancy_dir / SHARED / kind


def item_name(name: str) -> str:
    """A plain item name: no folders, nothing that could leave its folder."""
    cleaned = clean_name(name)
    if not cleaned or "/" in cleaned:
        raise PathRefused(f"{name!r} is not a plain name")
    return cleaned


def list_items(tenancy_dir: Path, tenant: str | None, kind: str) -> list[str]:
    """The tenant's own items, then shared ones as `shared/<name>`."""
    suffix = ITEM_SUFFIX.get(kind, "")
    own = _names(items_dir(tenancy_dir, tenant, kind), suffix)
    return own + [f"{SHARED}/{n}" for n in _names(shared_dir(tenancy_dir, kind), suffix)]


def item_path(tenancy_dir: Path, tenant: str | None, kind: str, name: str) -> Path:
    """The file of an item the tenant names (its own, or `shared/<name>`)."""
    suffix = ITEM_SUFFIX.get(kind, "")
    if name.startswith(f"{SHARED}/"):
        return shared_dir(tenancy_dir, kind) / (item_name(name[len(SHARED) + 1:]) + suffix)
    return items_dir(tenancy_dir, tenant, kind) / (item_name(name) + suffix)


def _names(folder: Path, suffix: str) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name[: len(p.name) - len(suffix)] for p in folder.iterdir()
                  if p.is_file() and p.name.endswith(suffix) and not p.name.startswith("."))

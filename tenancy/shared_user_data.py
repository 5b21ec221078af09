"""A tenant's ComfyUI user data (saved workflows, settings, templates: its `comfy-user` folder) shared by every
instance of a cluster through the outputs' bucket (`cluster.enabled` with `outputs.store: s3`), under
`<prefix>tenants/<tenant>/user/…`.

Pure decisions over data: where a file's object lies, what a write changed on this disk, and what one listing of
the tenant's prefix asks of this disk (fetch what is missing or newer, remove what the bucket no longer has). The
bucket is reached through `tenancy.store.object_store`; the disk in `tenancy.comfy`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .outputs import normalised_prefix
from .paths import TENANTS_DIR
from .shared_inputs import Held, Listed, needs_fetch, relative_name

USER = "user"
PUT, DELETE = "user_put", "user_delete"  # the kinds of the user-data writes waiting in the upload outbox


@dataclass(frozen=True)
class Local:
    """A file of the tenant's user data on this disk."""

    size: int
    mtime_ns: int

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9


@dataclass(frozen=True)
class SyncPlan:
    """What one listing asks of this disk, by the file's name in the tenant's user folder."""

    fetch: list[Listed] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)  # held entries of files neither listed nor on this disk


@dataclass(frozen=True)
class Changes:
    """What a request did to the tenant's user folder on this disk: files written (new or changed), files gone."""

    written: list[str]
    gone: list[str]


def user_prefix(prefix: str, tenant: str) -> str:
    """`<prefix>tenants/<tenant>/user/`: the tenant's user data, and nothing of anyone else's."""
    return f"{normalised_prefix(prefix)}{TENANTS_DIR}/{tenant}/{USER}/"


def user_key(prefix: str, tenant: str, name: str) -> str:
    return user_prefix(prefix, tenant) + name


def changes(before: Mapping[str, Local], after: Mapping[str, Local]) -> Changes:
    """What a request changed, from the folder as it was and as it is: a move is a file gone and one written."""
    return Changes(written=sorted(name for name, now in after.items() if before.get(name) != now),
                   gone=sorted(name for name in before if name not in after))


def sync_plan(tenant_prefix: str, listed: Iterable[Listed], on_disk: Mapping[str, Local],
              held: Mapping[str, Held], pending: set[str]) -> SyncPlan:
    """What this disk does to match one listing of the tenant's prefix.

    - An object is fetched when this disk lacks it or holds an older copy (`shared_inputs.needs_fetch`: the
      newer copy wins, what this process holds by ETag is never fetched again).
    - A local file the bucket no longer has is removed only when it is exactly what this instance last had in
      sync with the bucket (`held`: same size and mtime): it was deleted or moved through another instance. A
      file written here since, or never in the bucket (user data from before the cluster), is left alone.
    - Names with a write of this instance's still waiting in the upload outbox (`pending`) are left as they lie:
      the outbox puts or deletes them, in order, when the bucket takes them."""
    fetch, names = [], set()
    for item in listed:
        name = relative_name(tenant_prefix, item.key)
        if name is None:
            continue
        names.add(name)
        here = on_disk.get(name)
        if name not in pending and needs_fetch(item, None if here is None else (here.size, here.mtime),
                                               held.get(name)):
            fetch.append(item)
    remove = [name for name, here in on_disk.items()
              if name not in names and name not in pending and (known := held.get(name)) is not None
              and (known.size, known.mtime_ns) == (here.size, here.mtime_ns)]
    forget = [name for name in held if name not in names and name not in on_disk]
    return SyncPlan(fetch, sorted(remove), forget)


def pending_names(writes: Iterable[dict], tenant: str) -> set[str]:
    """The names of the tenant's user-data writes waiting in the upload outbox."""
    return {w["name"] for w in writes if w.get("kind") in (PUT, DELETE) and w.get("tenant") == tenant}

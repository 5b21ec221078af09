"""A tenant's uploads shared by every instance of a cluster through the outputs' bucket (`cluster.enabled` with
`outputs.store: s3`): the instance that takes an upload puts it in the bucket under `tenants/<tenant>/input/…`,
and an instance about to run (or validate) one of the tenant's prompts makes that prefix present on its disk.

Pure decisions over data: which object a key names in the tenant's input folder, and whether the copy on this
disk is current. The bucket is reached through `tenancy.store.object_store`; the disk in `tenancy.comfy`."""

from __future__ import annotations

from dataclasses import dataclass

from .outputs import object_key
from .paths import PathRefused, clean_name, tenant_root

INPUT = "input"


@dataclass(frozen=True)
class Listed:
    """One object under a tenant's input prefix, as the bucket lists it."""

    key: str
    etag: str
    size: int
    modified: float  # the bucket's Last-Modified, seconds since the epoch


@dataclass(frozen=True)
class Held:
    """What this instance last fetched (or put) for a key: the object's ETag and the local file it left."""

    etag: str
    size: int
    mtime_ns: int


def input_prefix(prefix: str, tenant: str) -> str:
    """`<prefix>tenants/<tenant>/input/`: every upload of the tenant's, and nothing of anyone else's."""
    return object_key(prefix, tenant, INPUT, tenant_root(tenant), "") + "/"


def relative_name(tenant_prefix: str, key: str) -> str | None:
    """The file's name inside the tenant's input folder (`sub/x.png`), None for a key that is not below the
    prefix or would not stay inside the folder as written (never followed: only the guard writes the bucket)."""
    if not key.startswith(tenant_prefix):
        return None
    rest = key[len(tenant_prefix):]
    try:
        cleaned = clean_name(rest)
    except PathRefused:
        return None
    return rest if cleaned == rest and rest else None


def needs_fetch(listed: Listed, on_disk: tuple[int, float] | None, held: Held | None) -> bool:
    """Whether the bucket's object replaces what lies on this disk (`on_disk`: size and mtime, None when absent).

    The newer copy wins: a local file written after the object (an upload here whose put is still pending, or
    one just fetched, whose mtime is set to the object's) is kept. The object this instance already holds (same
    ETag) is never fetched again. With another ETag than the one held, an object as old as the local file to the
    second (the bucket's clock ticks in seconds) is fetched: the object changed since. With none held (this
    process has not seen the key), a copy as new as the object and of its size is taken as it."""
    if on_disk is None:
        return True
    size, mtime = on_disk
    if held is not None and held.etag == listed.etag:
        return False
    if held is not None:
        return int(mtime) <= listed.modified
    return mtime < listed.modified or (size != listed.size and int(mtime) <= listed.modified)

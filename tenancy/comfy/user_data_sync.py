"""A tenant's ComfyUI user data the same from every instance (`cluster.enabled` with `outputs.store: s3`).

The editor's requests land on any instance: a workflow saved through one is listed by the next, a setting posted on
one is read on another, a rename or a delete on one happens on all. So, for a signed-in tenant (each has its own
ComfyUI user, `tenant-<tenant>`, through `comfy-user`):

- **Before a request reads its user data** (`present`), the instance makes the tenant's prefix
  `tenants/<tenant>/user/` present on its disk: one listing, a download of each object missing here or newer than
  the local copy, and the removal of local files the bucket no longer has that are exactly as last in sync here
  (`shared_user_data.sync_plan`). What this instance holds is remembered by ETag, in memory and in a small file per
  tenant (`<user dir>/__tenancy_user_data/<tenant>.json`, a ComfyUI system-user folder no request can reach), so a
  read fetches nothing it has and a restart knows what was in sync.
- **A request that writes it** (`writing`) runs after the same sync; what it changed on this disk (files written,
  files gone: ComfyUI's routes are watched by their effect, never by their names) is put in the bucket, or deleted
  from it, before it answers.
- Per tenant, on one instance, syncs and writes take turns (one asyncio lock); reads arriving while a sync runs
  share the next one that starts after they arrived (at most one more listing for any number of them).
- **The bucket down**: reads answer with what lies on this disk (no removal: a listing not taken removes nothing);
  writes are answered and their puts and deletes wait, in order, in the upload outbox; names with a write waiting
  there are left as they lie by every sync until it is applied. Logged once per outage.

Between instances the bucket decides: the last put of a file wins; a move is a put of the new name then a delete
of the old (a reader elsewhere in between may see both, never neither)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import Config
from ..outputs import content_type
from ..shared_inputs import Held, Listed
from ..shared_user_data import DELETE, PUT, Local, changes, pending_names, sync_plan, user_key, user_prefix
from ..store.object_store import ObjectStoreUnavailable
from .disk import PART, download_over, regular_files
from .execution.output_uploads import OutputUploads
from .surfaces.user_data import COMFY_USER_PREFIX

log = logging.getLogger("tenancy")
STATE_DIR = "__tenancy_user_data"  # ComfyUI's system users start with "__": no request reaches that folder


@dataclass
class _Tenant:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    started: int = 0  # syncs begun
    done: int = 0  # syncs ended
    held: dict[str, Held] | None = None  # name -> what this disk last had in sync with the bucket (lazily read)


class SharedUserData:
    def __init__(self, settings: Config, uploads: OutputUploads, user_root: Path | None) -> None:
        self.uploads = uploads
        self.bucket = uploads.bucket if settings.cluster.enabled and user_root is not None else None
        self.prefix = settings.outputs.prefix
        self.root = user_root
        self.metrics = uploads.metrics
        self.tenants: dict[str, _Tenant] = {}
        self._skipping = False  # logged once while the bucket does not answer
        if self.bucket is not None:
            uploads.appliers[PUT] = uploads.appliers[DELETE] = self._apply

    @property
    def enabled(self) -> bool:
        return self.bucket is not None

    # -- reads ---------------------------------------------------------------------------------------------------
    async def present(self, tenant: str | None) -> None:
        """The tenant's user data on this disk as the bucket has it, before a read of it is answered."""
        if self.bucket is None or not tenant:
            return
        state = self._state(tenant)
        wanted = state.started + 1  # a sync that begins after this request arrived answers for it
        async with state.lock:
            if state.done >= wanted:
                return
            await self._sync(tenant, state)

    # -- writes --------------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def writing(self, tenant: str | None) -> AsyncIterator[None]:
        """Around ComfyUI's handler of a request that may write the tenant's user data: synced before it runs,
        and what it changed here put in (or deleted from) the bucket before the answer goes."""
        if self.bucket is None or not tenant:
            yield
            return
        state = self._state(tenant)
        async with state.lock:
            await self._sync(tenant, state)
            before = await asyncio.to_thread(self._on_disk, tenant)
            try:
                yield
            finally:
                after = await asyncio.to_thread(self._on_disk, tenant)
                await self._share(tenant, state, changes(before, after))

    async def _share(self, tenant: str, state: _Tenant, changed) -> None:
        writes = [{"kind": PUT, "tenant": tenant, "name": name} for name in changed.written]
        writes += [{"kind": DELETE, "tenant": tenant, "name": name} for name in changed.gone]
        outbox = self.uploads.outbox
        for i, write in enumerate(writes):
            # behind a write of the tenant's already waiting, or with the bucket down: in the outbox, in order
            if not self.uploads.reachable or pending_names(outbox.pending, tenant):
                self._queue(tenant, writes[i:], "the bucket does not answer")
                return
            try:
                await asyncio.to_thread(self._apply_now, state, write)
            except ObjectStoreUnavailable as exc:
                self.uploads.set_reachable(False)
                self._queue(tenant, writes[i:], str(exc))
                return

    def _queue(self, tenant: str, writes: list[dict], why: str) -> None:
        if not self._skipping:
            log.error("[tenancy] tenants' user data is not in the bucket yet (%s): writes wait in the upload outbox "
                      "and reads answer with what lies on this disk until it answers", why)
            self._skipping = True
        for write in writes:
            self.uploads.outbox.put(write)

    async def _apply(self, write: dict) -> None:
        """A write from the upload outbox (ObjectStoreUnavailable: it waits and is retried)."""
        state = self._state(write["tenant"])
        async with state.lock:
            await asyncio.to_thread(self._apply_now, state, write)

    def _apply_now(self, state: _Tenant, write: dict) -> None:
        tenant, name = write["tenant"], write["name"]
        held = self._held(tenant, state)
        key = user_key(self.prefix, tenant, name)
        if write["kind"] == DELETE:
            self._count("delete")
            refused = self.bucket.delete([key])
            if refused:
                log.error("[tenancy] the bucket refused to delete %s: other instances keep serving it", key)
            held.pop(name, None)
        else:
            path = self._local(tenant, name)
            if path is None or not path.is_file():
                return  # gone again since (its delete follows in order)
            self._count("put")
            self.bucket.upload(path, key, content_type(path.name))
            self._count("head")
            etag, _size, modified = self.bucket.head(key)
            os.utime(path, (modified, modified))  # the object's time: every instance lists the same time
            done = path.stat()
            held[name] = Held(etag, done.st_size, done.st_mtime_ns)
        self._saved(tenant, held)
        self.uploads.set_reachable(True)
        self._skipping = False

    # -- the sync ------------------------------------------------------------------------------------------------
    async def _sync(self, tenant: str, state: _Tenant) -> None:
        """One sync, under the tenant's lock: never raises (a read is answered from this disk rather than not)."""
        state.started += 1
        try:
            if not self.uploads.reachable:
                self._skip("the bucket does not answer")
                return
            pending = pending_names(self.uploads.outbox.pending, tenant)
            await asyncio.to_thread(self._sync_now, tenant, state, pending)
        except ObjectStoreUnavailable as exc:
            self.uploads.set_reachable(False)
            self._skip(str(exc))
        except Exception:
            log.exception("[tenancy] tenant %s's user data could not be synced with the bucket: answered with what "
                          "lies on this disk", tenant)
        finally:
            state.done = state.started

    def _sync_now(self, tenant: str, state: _Tenant, pending: set[str]) -> None:
        prefix = user_prefix(self.prefix, tenant)
        self._count("list")
        listed = [Listed(*found) for found in self.bucket.listing(prefix)]
        held = self._held(tenant, state)
        plan = sync_plan(prefix, listed, self._on_disk(tenant), held, pending)
        changed = bool(plan.remove or plan.forget)
        for item in plan.fetch:
            name = item.key[len(prefix):]
            path = self._local(tenant, name)
            if path is None:
                continue
            try:
                self._count("get")
                done = download_over(self.bucket, item.key, item.modified, path)
            except FileNotFoundError:  # deleted since the listing
                continue
            except OSError as exc:  # e.g. a folder where the file would go: that file stays missing here
                log.error("[tenancy] tenant %s's user data %s could not be written to %s: %s", tenant, name, path, exc)
                continue
            held[name] = Held(item.etag, done.st_size, done.st_mtime_ns)
            changed = True
        for name in plan.remove:
            path = self._local(tenant, name)
            if path is not None:
                path.unlink(missing_ok=True)
            held.pop(name, None)
        for name in plan.forget:
            held.pop(name, None)
        if changed:
            self._saved(tenant, held)
            log.info("[tenancy] tenant %s's user data: %d fetched from the bucket, %d removed here (gone there)",
                     tenant, len(plan.fetch), len(plan.remove))
        self._skipping = False

    def _skip(self, why: str) -> None:
        if not self._skipping:
            log.error("[tenancy] tenants' user data is not synced with the bucket (%s): reads answer with what lies "
                      "on this disk, writes wait in the upload outbox", why)
        self._skipping = True

    # -- this disk -----------------------------------------------------------------------------------------------
    def _folder(self, tenant: str) -> Path:
        return self.root / f"{COMFY_USER_PREFIX}{tenant}"

    def _local(self, tenant: str, name: str) -> Path | None:
        """The file of that name in the tenant's user folder; None for a name that would leave it."""
        folder = os.path.realpath(self._folder(tenant))
        path = os.path.realpath(os.path.join(folder, name))
        return Path(path) if path.startswith(folder + os.sep) else None

    def _on_disk(self, tenant: str) -> dict[str, Local]:
        """Every file of the tenant's user folder: name -> size and mtime (downloads in progress left out)."""
        folder = self._folder(tenant)
        return {Path(os.path.relpath(path, folder)).as_posix(): Local(info.st_size, info.st_mtime_ns)
                for path, info in regular_files(folder) if not os.path.basename(path).startswith(PART)}

    def _state(self, tenant: str) -> _Tenant:
        state = self.tenants.get(tenant)
        if state is None:
            state = self.tenants[tenant] = _Tenant()
        return state

    def _held(self, tenant: str, state: _Tenant) -> dict[str, Held]:
        if state.held is None:
            state.held = {}
            try:
                saved = json.loads(self._state_file(tenant).read_text())
                state.held = {name: Held(**held) for name, held in saved.items()}
            except FileNotFoundError:
                pass
            except (OSError, ValueError, TypeError) as exc:  # nothing removed on its word: only fetches
                log.error("[tenancy] %s unreadable (%s): tenant %s's user data starts unsynced here",
                          self._state_file(tenant), exc, tenant)
        return state.held

    def _saved(self, tenant: str, held: dict[str, Held]) -> None:
        path = self._state_file(tenant)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{PART}{uuid.uuid4().hex}")
        part.write_text(json.dumps({name: asdict(h) for name, h in held.items()}))
        os.replace(part, path)

    def _state_file(self, tenant: str) -> Path:
        return self.root / STATE_DIR / f"{tenant}.json"

    def _count(self, request: str) -> None:
        self.metrics.series(self.metrics.user_data_bucket, request).inc()


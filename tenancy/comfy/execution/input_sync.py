"""A tenant's uploads on whichever instance runs its prompt (`cluster.enabled` with `outputs.store: s3`).

The instance that takes an upload puts it in the bucket under `tenants/<tenant>/input/…` before it answers: the
client's next /prompt may run on any worker at once, so an upload only queued for later (as outputs are) could
be missing there. An instance about to run a tenant's prompt (its worker, before it returns the claimed prompt
to ComfyUI), to validate one (/prompt) or to take an upload (ComfyUI's renaming of a same-named file must see the
tenant's whole folder) first makes the tenant's input prefix present on its disk: one listing, and a download of
each object that is missing here or newer than the local copy. Which node inputs name files is never looked at
(node packs vary): every upload of that tenant, and only that tenant's, is made present. What this process holds
is remembered by ETag, so a second prompt fetches nothing new.

With the bucket down, uploads are answered anyway (their put waits in the outputs' upload outbox) and prompts
run with what lies on this disk (logged); a prompt naming an upload taken elsewhere then fails where it runs."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from pathlib import Path

from ...config import Config
from ...outputs import content_type, object_key
from ...paths import PathRefused, contained, tenant_root
from ...shared_inputs import INPUT, Held, Listed, input_prefix, needs_fetch, relative_name
from ...store.object_store import ObjectStoreUnavailable
from ..disk import download_over
from .output_uploads import OutputUploads

log = logging.getLogger("tenancy")


class SharedInputs:
    def __init__(self, settings: Config, folders: dict[str, Path], uploads: OutputUploads) -> None:
        self.uploads = uploads
        self.bucket = uploads.bucket if settings.cluster.enabled else None
        self.prefix = settings.outputs.prefix
        self.root = folders[INPUT]
        self.held: dict[str, Held] = {}  # object key -> what this process last fetched or put for it
        self._lock = threading.Lock()  # the worker thread and the server's threads both sync
        self._skipping = False  # logged once while the bucket does not answer

    @property
    def enabled(self) -> bool:
        return self.bucket is not None

    # -- making a tenant's uploads present here (blocking: the worker thread, or a thread of the loop's) ----------
    def present(self, tenant: str | None) -> int:
        """Fetch the tenant's uploads that this disk lacks or holds older; how many were fetched. Never raises:
        ComfyUI's worker thread calls it, and a prompt runs with what lies here rather than not at all."""
        if self.bucket is None or not tenant:
            return 0
        try:
            return self._present(tenant)
        except Exception:
            log.exception("[tenancy] tenant %s's uploads could not be made present: the prompt runs with what "
                          "lies on this disk", tenant)
            return 0

    def _present(self, tenant: str) -> int:
        if not self.uploads.reachable:
            self._skip("the bucket does not answer")
            return 0
        tenant_prefix = input_prefix(self.prefix, tenant)
        try:
            listed = [Listed(*found) for found in self.bucket.listing(tenant_prefix)]
        except ObjectStoreUnavailable as exc:
            self._failed(exc)
            return 0
        fetched = 0
        for item in listed:
            path = self._local(tenant, relative_name(tenant_prefix, item.key))
            if path is None or not needs_fetch(item, _on_disk(path), self.held.get(item.key)):
                continue
            try:
                self._fetch(item, path)
            except ObjectStoreUnavailable as exc:
                self._failed(exc)
                return fetched
            except OSError as exc:  # e.g. a folder where the file would go: that file stays missing here
                log.error("[tenancy] tenant %s's upload %s could not be written to %s: %s", tenant, item.key, path,
                          exc)
                continue
            fetched += 1
        if fetched:
            log.info("[tenancy] fetched %d of tenant %s's uploads from the bucket", fetched, tenant)
        self._skipping = False
        return fetched

    async def present_async(self, tenant: str | None) -> None:
        if self.bucket is not None and tenant:
            await asyncio.to_thread(self.present, tenant)

    def _local(self, tenant: str, name: str | None) -> Path | None:
        if name is None:
            return None
        try:  # a symlink in the tenant's folder may not lead a download out of it
            return Path(contained(self.root, f"{tenant_root(tenant)}/{name}", tenant))
        except PathRefused:
            return None

    def _fetch(self, item: Listed, path: Path) -> None:
        done = download_over(self.bucket, item.key, item.modified, path)
        with self._lock:
            self.held[item.key] = Held(item.etag, done.st_size, done.st_mtime_ns)

    def _skip(self, why: str) -> None:
        if not self._skipping:
            log.error("[tenancy] tenants' uploads are not fetched from the bucket (%s): prompts run with what lies "
                      "on this disk", why)
        self._skipping = True

    def _failed(self, exc: ObjectStoreUnavailable) -> None:
        self.uploads.set_reachable(False)  # the outputs' probe sees it back within a few seconds
        self._skip(str(exc))

    # -- an upload taken here -------------------------------------------------------------------------------------
    async def shared(self, tenant: str, real_subfolder: str, name: str) -> None:
        """Put an upload just written to this disk in the bucket before the upload is answered; with the bucket
        down it waits in the upload outbox instead (retried until the bucket takes it)."""
        if self.bucket is None:
            return
        key = object_key(self.prefix, tenant, INPUT, real_subfolder, name)
        try:
            await asyncio.to_thread(self._put, self.root / real_subfolder / name, key)
        except ObjectStoreUnavailable as exc:
            log.error("[tenancy] tenant %s's upload %s is not in the bucket yet (%s): it waits in the upload outbox; "
                      "until then only this instance can run a prompt that loads it", tenant, key, exc)
            self.uploads.set_reachable(False)
            self.uploads.outbox.put({"kind": "upload", "folder": INPUT, "subfolder": real_subfolder,
                                     "filename": name, "key": key})

    def _put(self, path: Path, key: str) -> None:
        self.bucket.upload(path, key, content_type(path.name))
        etag, _size, modified = self.bucket.head(key)
        os.utime(path, (modified, modified))  # as a fetched copy: the object's time
        done = path.stat()
        with self._lock:
            self.held[key] = Held(etag, done.st_size, done.st_mtime_ns)


def _on_disk(path: Path) -> tuple[int, float] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return (found.st_size, found.st_mtime) if stat.S_ISREG(found.st_mode) else None

"""Tenants' outputs in the configured bucket (`outputs.store: s3`): uploaded after each successful prompt, and
downloads of them answered with a redirect to a short-lived presigned URL once they are there.

Uploads run in a thread, never on ComfyUI's event loop, through an outbox of their own: a write is on disk before
anything is tried, a failed upload waits and is retried (after a restart too), and neither the prompt nor its
settlement ever waits for the bucket. Until a file is known to be in the bucket, or while the bucket does not
answer, downloads are served from this machine's disk as without a bucket."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from ...config import Config
from ...metrics import Metrics
from ...outputs import (
    LOOK,
    PREVIEW_TAG,
    PREVIEWS,
    REDIRECT,
    bucket_folders,
    content_disposition,
    content_type,
    object_key,
    owner_of,
    put_when_shown,
    result_files,
    shown_files,
    uploaded_files,
    where_to_serve,
)
from ...owners import RecentPrompts
from ...retention import OUTPUT, past
from ...store.object_store import CdnSigner, ObjectStore, ObjectStoreUnavailable
from ...store.outbox import Outbox

log = logging.getLogger("tenancy")
PUT_WAIT_S = 60.0  # how long a file another thread is putting is waited for (the client's timeouts bound a put)
PROBE_EVERY_S = 5.0  # how soon a bucket that went down (or came back) changes where downloads are served from


class OutputUploads:
    def __init__(self, settings: Config, folders: dict[str, Path], metrics: Metrics, outbox_path: Path) -> None:
        self.folders, self.metrics = folders, metrics
        self.settings = settings.outputs
        self.served = bucket_folders(settings.cluster.enabled)  # what /view may find in the bucket
        # "folder/subfolder/name" -> (object key, when it was put there), for files known to be in the bucket
        self.uploaded = RecentPrompts()
        self.lock = threading.Lock()  # `uploaded` and `putting` change from the loop and from threads
        self.putting: dict[str, threading.Event] = {}  # files a thread is putting in the bucket now
        self.reachable = True
        self.bucket: ObjectStore | None = None
        self.outbox: Outbox | None = None
        self.cdn: CdnSigner | None = None
        # the outbox's other kinds of writes (tenants' user data in a cluster): kind -> what applies one
        self.appliers: dict[str, Callable[[dict], Awaitable[None]]] = {}
        if self.settings.store == "s3":
            s = self.settings
            try:
                self.bucket = ObjectStore(bucket=s.bucket, endpoint=s.endpoint, public_endpoint=s.public_endpoint,
                                          region=s.region, access_key=s.access_key, secret_key=s.secret_key,
                                          multipart_mb=s.multipart_mb)
            except ImportError as exc:  # the guard must refuse to start, not fail open with the plugin's import
                raise RuntimeError(f"outputs.store is s3 but {exc.name} is not installed: install requirements.txt "
                                   "(boto3) into ComfyUI's Python") from None
            self.outbox = Outbox(outbox_path, self._apply, retry_on=(ObjectStoreUnavailable,), what="object store")
            if s.cdn is not None:
                self.cdn = CdnSigner(s.cdn.url, s.cdn.key_id, settings.path(s.cdn.private_key_file).read_bytes())

    @property
    def backlog(self) -> int:
        return self.outbox.backlog if self.outbox else 0

    @property
    def healthy(self) -> bool:
        return self.outbox is None or (self.reachable and not self.outbox.error)

    def completed(self, tenant: str | None, files: list[tuple[str, str, str]]) -> None:
        """A tenant's prompt succeeded: its outputs join the upload outbox (a local append; nothing waits)."""
        if self.outbox is None:
            return
        for folder, subfolder, filename in uploaded_files(tenant, files):
            self.outbox.put({"kind": "upload", "folder": folder, "subfolder": subfolder, "filename": filename,
                             "key": object_key(self.settings.prefix, tenant, folder, subfolder, filename)})

    async def _apply(self, write: dict) -> None:
        applier = self.appliers.get(write.get("kind", ""))
        await (applier(write) if applier is not None else self._upload(write))

    async def _upload(self, write: dict) -> None:
        folder, subfolder, filename = write["folder"], write["subfolder"], write["filename"]
        if self.uploaded.get(f"{folder}/{subfolder}/{filename}", (None,))[0] == write["key"]:
            return  # put already, when a message or the result named it (`put_shown`)
        path = self.folders[folder] / subfolder / filename
        if not path.is_file():
            log.warning("[tenancy] output %s/%s/%s is gone before its upload: not uploaded", folder, subfolder,
                        filename)
            return
        metrics = self.metrics
        try:
            await asyncio.to_thread(self.bucket.upload, path, write["key"], content_type(filename))
        except ObjectStoreUnavailable:
            metrics.series(metrics.output_uploads, "error").inc()
            self.set_reachable(False)
            raise
        metrics.series(metrics.output_uploads, "ok").inc()
        self.set_reachable(True)
        self._remember(f"{folder}/{subfolder}/{filename}", write["key"], time.time())

    def serves(self, folder: str) -> bool:
        """Whether /view may find files of this folder in the bucket."""
        return self.bucket is not None and folder in self.served

    async def share_shown(self, tenant: str, output: dict) -> None:
        """An `executed` message's previews and outputs, put in the bucket before the message goes on (`put_shown`):
        the editor that reads it may ask another instance for them at once."""
        files = shown_files(output) if self.shares else []
        if files:  # most messages name none (text, numbers): no thread for them
            await asyncio.to_thread(self.put_shown, tenant, files)

    def share_result(self, tenant: str, history_result: dict) -> None:
        """A finished prompt's previews and outputs, put in the bucket before its result is recorded anywhere
        (`put_shown`; ComfyUI's worker thread): a client polling /history, without a socket (ComfyUI then sends no
        `executed`), may ask another instance for them as soon as the entry shows."""
        if self.shares:
            self.put_shown(tenant, result_files(history_result))

    @property
    def shares(self) -> bool:
        """In a cluster with a bucket that answers, shown files are put in the bucket as they are shown."""
        return self.bucket is not None and PREVIEWS in self.served and self.reachable

    def put_shown(self, tenant: str, files: list[tuple[str, str, str]]) -> None:
        """Put in the bucket the tenant's previews and outputs that `put_when_shown`, unless they are there: blocks
        (a thread). A file another thread is putting is waited for, not put twice. An output put here is not put
        again by the upload after the prompt. While the bucket does not answer, files stay on this disk only (the
        bucket's state is logged)."""
        for folder, subfolder, filename in files:
            path = self.folders[folder] / subfolder / filename
            if not self.reachable:
                return
            if owner_of(subfolder) != tenant or not path.is_file():
                continue  # only the tenant's own folder (a ref is ComfyUI's, but never trusted to lie elsewhere)
            known = f"{folder}/{subfolder}/{filename}"
            if not put_when_shown(folder, path.stat().st_size) or known in self.uploaded:
                continue
            with self.lock:
                putting = self.putting.get(known)
                if putting is None:
                    self.putting[known] = done = threading.Event()
            if putting is not None:
                putting.wait(PUT_WAIT_S)
                continue
            key = object_key(self.settings.prefix, tenant, folder, subfolder, filename)
            try:
                self.bucket.upload(path, key, content_type(filename), PREVIEW_TAG if folder == PREVIEWS else "")
                self._remember(known, key, time.time())
            except ObjectStoreUnavailable:
                self.set_reachable(False)
                return
            finally:
                with self.lock:
                    del self.putting[known]
                done.set()

    def _remember(self, known: str, key: str, put: float) -> None:
        with self.lock:
            self.uploaded.remember(known, (key, put))

    async def run(self) -> None:
        """Apply the uploads, and look at the bucket every PROBE_EVERY_S, for ever."""
        if self.outbox is None:
            return
        uploads = asyncio.get_running_loop().create_task(self.outbox.run())
        try:
            while True:
                self.set_reachable(await asyncio.to_thread(self.bucket.reachable))
                await asyncio.sleep(PROBE_EVERY_S)
        finally:
            uploads.cancel()

    def set_reachable(self, reachable: bool) -> None:
        if reachable != self.reachable:
            log.warning("[tenancy] the outputs' bucket %s", "answers again" if reachable else "does not answer: "
                        "outputs are served from disk and uploads wait")
        self.reachable = reachable
        self.metrics.output_store_up.set(int(reachable))

    def forget(self, files: list[tuple[str, str, str]]) -> None:
        """Deleted files (the retention sweep): never redirected to again from what this process remembers."""
        with self.lock:
            for folder, subfolder, filename in files:
                self.uploaded.pop(f"{folder}/{subfolder}/{filename}", None)

    async def redirect(self, method: str, tenant: str | None, location: tuple[str, str, str],
                       attachment: bool, days: float = 0.0) -> web.Response | None:
        """A 302 to a presigned URL of an output, or in a cluster of an upload (`location`: folder, real
        subfolder, file name, already checked to be the caller's), or None when it is served from disk. `days`:
        the owner's output_days; an object past it is never redirected to (the sweep deletes it, perhaps from
        another instance or from the command line, and a presigned URL to it would break)."""
        if self.bucket is None or method != "GET" or location[0] not in self.served:
            return None
        owner = tenant or owner_of(location[1])
        if location[0] != OUTPUT:
            days = 0.0  # the retention is of outputs; uploads in the bucket are not swept
        key = await self._key_in_bucket(owner, location, days) if owner else None
        metrics = self.metrics
        metrics.series(metrics.output_downloads, "disk" if key is None else "bucket").inc()
        if key is None:
            return None
        filename = location[2]
        ttl, disposition = self.settings.url_ttl_s, content_disposition(filename, attachment)
        url = self.cdn.sign(key, ttl, disposition, time.time()) if self.cdn else \
            self.bucket.presign(key, ttl, content_type(filename), disposition)
        return web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})

    async def _key_in_bucket(self, owner: str, location: tuple[str, str, str], days: float) -> str | None:
        """The object key to redirect to, None to serve from disk."""
        folder, subfolder, filename = location
        known = f"{folder}/{subfolder}/{filename}"
        key, put = self.uploaded.get(known, (None, 0.0))
        if key is not None and past(put, time.time(), days):
            key = None
            self.forget([location])
        on_disk = (self.folders[folder] / subfolder / filename).is_file()
        where = where_to_serve(uploaded=key is not None, reachable=self.reachable, on_disk=on_disk)
        if where == LOOK:  # another instance may have made it: ask the bucket (network I/O: in a thread)
            key = object_key(self.settings.prefix, owner, folder, subfolder, filename)
            try:
                put = await asyncio.to_thread(self.bucket.modified, key)
                if put is not None and not past(put, time.time(), days):
                    self._remember(known, key, put)
                    return key
            except ObjectStoreUnavailable:
                self.set_reachable(False)
            return None
        return key if where == REDIRECT else None

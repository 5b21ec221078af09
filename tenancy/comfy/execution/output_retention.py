"""The sweep that deletes tenants' outputs past their plan's `output_days` (the rule: `tenancy.retention`).

Each instance sweeps its own output folder (`output/tenants/<tenant>/`, regular files only, symlinks neither
followed nor deleted; input/ and temp/ are never touched); one instance a period also sweeps the bucket (the
tenant's `<prefix>tenants/<tenant>/output/`), the one that takes the store's lock for it (SET NX PX in Redis).
What it deleted leaves the output index and this process's caches, so a download of it answers 404. It runs every
`outputs.sweep_s` (the first time a minute after start); the file and bucket work runs in threads, never on
ComfyUI's event loop. Only tenants whose plan sets output_days are listed. `python -m tenancy outputs sweep` runs
the same sweep once (this module imports neither aiohttp nor ComfyUI for it)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ...audit import AuditLog
from ...config import Config
from ...config import Outputs as OutputsSettings
from ...paths import TENANTS_DIR
from ...retention import (
    BUCKET_DUTY,
    FIRST_SWEEP_S,
    OUTPUT,
    Swept,
    any_retention,
    bucket_claim_s,
    expired,
    location_of_key,
    retained_tenants,
    tenant_output_prefix,
)
from ...store import StoreUnavailable
from ...store.object_store import DELETE_BATCH, ObjectStore, ObjectStoreUnavailable
from ..disk import regular_files

log = logging.getLogger("tenancy")
File = tuple[str, str, str]  # folder, real subfolder, file name


def open_bucket(outputs: OutputsSettings) -> ObjectStore | None:
    """The outputs' bucket (`outputs.store: s3`), None without one."""
    if outputs.store != "s3":
        return None
    return ObjectStore(bucket=outputs.bucket, endpoint=outputs.endpoint, public_endpoint=outputs.public_endpoint,
                       region=outputs.region, access_key=outputs.access_key, secret_key=outputs.secret_key,
                       multipart_mb=outputs.multipart_mb)


class OutputRetention:
    """`forget`: drops deleted files from the caller's own caches (ComfyUI: the owners' and uploads' memories)."""

    def __init__(self, settings: Config, store, output_root: Path, bucket: ObjectStore | None,
                 audit: AuditLog | None, forget: Callable[[list[File]], None] | None = None) -> None:
        self.settings, self.store, self.bucket, self.audit = settings, store, bucket, audit
        self.output_root = Path(output_root)
        self.forget = forget

    async def run(self) -> None:
        """Sweep every outputs.sweep_s, for ever (nothing when no plan sets output_days or sweep_s is 0)."""
        every = self.settings.outputs.sweep_s
        if every <= 0 or not any_retention(self.settings.plans):
            return
        await asyncio.sleep(min(FIRST_SWEEP_S, every))
        while True:
            try:
                await self.sweep()
            except StoreUnavailable as exc:
                log.error("[tenancy] output retention: the store does not answer (%s); next sweep in %g s", exc,
                          every)
            except Exception:  # the sweep must go on next period whatever failed this one
                log.exception("[tenancy] output retention: the sweep failed; next sweep in %g s", every)
            await asyncio.sleep(every)

    async def sweep(self, *, claim_bucket: bool = True, now: float | None = None) -> list[Swept]:
        """One sweep: what it deleted, per tenant whose plan sets output_days. The bucket is swept when this
        process takes the period's lock (`claim_bucket`), or always (`claim_bucket=False`: by hand)."""
        plans = self.settings.plans
        if not any_retention(plans):
            return []
        retained = retained_tenants(await self.store.list_tenants(), plans)
        if not retained:
            return []
        bucket = self.bucket is not None and (not claim_bucket or await self.store.claim_duty(
            BUCKET_DUTY, bucket_claim_s(self.settings.outputs.sweep_s)))
        now = time.time() if now is None else now
        done = []
        for tenant, days in retained.items():
            files = await asyncio.to_thread(self._sweep_disk, tenant, days, now)
            keys = await asyncio.to_thread(self._sweep_bucket, tenant, days, now) if bucket else []
            prefix = self.settings.outputs.prefix
            gone = list(dict.fromkeys(files + [found for key in keys
                                               if (found := location_of_key(prefix, tenant, key)) is not None]))
            if gone:
                if self.forget is not None:
                    self.forget(gone)
                await self.store.forget_outputs(gone)
            swept = Swept(tenant, days, len(files), len(keys))
            if swept.disk or swept.bucket:
                log.info("[tenancy] output retention: %s: %d outputs older than %g days deleted from this disk, "
                         "%d from the bucket", tenant, swept.disk, days, swept.bucket)
                if self.audit is not None:
                    self.audit.record(tenant=tenant, route="output retention", decision="delete_outputs",
                                      disk=swept.disk, bucket=swept.bucket, days=days)
            done.append(swept)
        return done

    def _sweep_disk(self, tenant: str, days: float, now: float) -> list[File]:
        """Delete the tenant's regular files in its output folder past the retention (blocking: in a thread)."""
        base = os.path.realpath(self.output_root / TENANTS_DIR)
        root = self.output_root / TENANTS_DIR / tenant
        if root.is_symlink() or not root.is_dir() or os.path.dirname(os.path.realpath(root)) != base:
            return []  # nothing there, or not a folder of its own inside output/tenants/
        listing = [(path, info.st_mtime) for path, info in regular_files(root)]
        deleted = []
        for path in expired(listing, now, days):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # gone already (another sweep): still forgotten below
            except OSError as exc:
                log.warning("[tenancy] output retention: cannot delete %s: %s", path, exc)
                continue
            relative = os.path.relpath(path, self.output_root).replace(os.sep, "/")
            subfolder, _, name = relative.rpartition("/")
            deleted.append((OUTPUT, subfolder, name))
        return deleted

    def _sweep_bucket(self, tenant: str, days: float, now: float) -> list[str]:
        """Delete the tenant's objects under its output prefix past the retention (blocking: in a thread); the
        keys deleted. A bucket that does not answer is logged and tried again next period."""
        prefix = tenant_output_prefix(self.settings.outputs.prefix, tenant)
        deleted: list[str] = []
        try:
            listing = [(key, modified) for key, _etag, _size, modified in self.bucket.listing(prefix)]
            doomed = expired(listing, now, days)
            for start in range(0, len(doomed), DELETE_BATCH):
                batch = doomed[start:start + DELETE_BATCH]
                refused = set(self.bucket.delete(batch))
                deleted += [key for key in batch if key not in refused]
                if refused:
                    log.warning("[tenancy] output retention: the bucket refused to delete %d objects under %s",
                                len(refused), prefix)
        except ObjectStoreUnavailable as exc:
            log.error("[tenancy] output retention: %s (the rest is tried next period)", exc)
        return deleted

"""Reading this machine's folders, for the adapter's parts that look through a tenant's files."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

PART = ".tenancy-"  # a file being written next to the one it replaces (hidden: no listing shows it)


def regular_files(root: Path | str) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file under `root` and its lstat: links are never followed (nor listed), and a file gone
    between the listing and its stat is skipped."""
    for folder, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield path, info


def download_over(bucket, key: str, modified: float, path: Path) -> os.stat_result:
    """An object of the bucket (`store.object_store.ObjectStore`) downloaded next to `path`, then renamed over it:
    a reader never sees half a file. It gets the object's time (a restart, or another instance, knows it is
    current). Its stat; the bucket's errors and FileNotFoundError (deleted since it was listed) go to the caller."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{PART}{uuid.uuid4().hex}.part")
    try:
        bucket.download(key, part)
        os.utime(part, (modified, modified))
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path.stat()

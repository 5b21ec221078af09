"""Reading this machine's folders, for the adapter's parts that look through a tenant's files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path


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

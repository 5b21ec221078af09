"""Newer ComfyUI's asset table (0.33.0 and later, feature-detected): which files a content hash names.

The table knows no tenants (files found by its scans and uploads have no owner), so the guard asks it only for
the files and decides itself whose they are. Without the table (0.3.75, or no database) no hash names a file.
"""

from __future__ import annotations

import logging

log = logging.getLogger("tenancy")


def files_with_hash(asset_hash: str) -> list[str]:
    """Paths on disk of the live copies of the content with this hash (`blake3:<hex>`); [] when none or unknown."""
    try:
        from app.assets.database.queries import get_asset_by_hash, list_references_by_asset_id
        from app.database.db import create_session
    except ImportError:
        return []
    try:
        with create_session() as session:
            asset = get_asset_by_hash(session, asset_hash)
            if asset is None:
                return []
            return [ref.file_path for ref in list_references_by_asset_id(session, asset_id=asset.id)
                    if getattr(ref, "file_path", None)]
    except Exception:  # no database, another schema: the hash names nothing the guard can vouch for
        log.warning("[tenancy] cannot look up asset %s", asset_hash[:80], exc_info=True)
        return []

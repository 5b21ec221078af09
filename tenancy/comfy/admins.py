"""First start inside ComfyUI: print a one-time operator key when no operator exists yet."""

from __future__ import annotations

import logging

from ..accounts import operator_key_if_none

log = logging.getLogger("tenancy")


async def ensure_operator_key(guard) -> None:
    key = await operator_key_if_none(guard.store)
    if key:
        log.warning("[tenancy] no operator yet: operator API key (shown once, stored hashed): %s", key)
        log.warning("[tenancy] add a named operator with `python -m tenancy admin add NAME` and revoke this key")

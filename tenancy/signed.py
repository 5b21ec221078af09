"""Signed, expiring download URLs: HMAC over tenant, folder type, subfolder, filename and expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class FileGrant:
    tenant: str | None
    folder: str
    subfolder: str
    filename: str
    expires: int


def sign(secret: bytes, grant: FileGrant) -> str:
    payload = json.dumps([grant.tenant, grant.folder, grant.subfolder, grant.filename, grant.expires],
                         separators=(",", ":")).encode()
    mac = hmac.new(secret, b"file:" + payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify(secret: bytes, token: str, now: float | None = None) -> FileGrant | None:
    """The grant of a valid, unexpired token, else None."""
    try:
        payload_text, mac_text = token.split(".", 1)
        payload = _unb64(payload_text)
        expected = hmac.new(secret, b"file:" + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac_text)):
            return None
        tenant, folder, subfolder, filename, expires = json.loads(payload)
    except (ValueError, TypeError):
        return None
    if expires < (time.time() if now is None else now):
        return None
    return FileGrant(tenant, folder, subfolder, filename, int(expires))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

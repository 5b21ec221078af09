"""Sealed, expiring tokens: JSON data with an HMAC over a purpose and the data, so a token made for one purpose
(a download URL, a sign-in flow) is never accepted for another. Download URLs seal tenant, folder type, subfolder,
filename and expiry."""

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


def seal(secret: bytes, purpose: str, data) -> str:
    """`data` (JSON) and its MAC, URL-safe; `purpose` is signed with it and must match when unsealed."""
    payload = json.dumps(data, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def unseal(secret: bytes, purpose: str, token: str):
    """The data of a token sealed for `purpose` with `secret`, else None (whatever is wrong with it)."""
    try:
        payload_text, mac_text = token.split(".", 1)
        payload = _unb64(payload_text)
        if not hmac.compare_digest(_mac(secret, purpose, payload), _unb64(mac_text)):
            return None
        return json.loads(payload)
    except (ValueError, TypeError):
        return None


def sign(secret: bytes, grant: FileGrant) -> str:
    return seal(secret, "file", [grant.tenant, grant.folder, grant.subfolder, grant.filename, grant.expires])


def verify(secret: bytes, token: str, now: float | None = None) -> FileGrant | None:
    """The grant of a valid, unexpired download token, else None."""
    data = unseal(secret, "file", token)
    if not isinstance(data, list) or len(data) != 5 or not isinstance(data[4], (int, float)):
        return None
    tenant, folder, subfolder, filename, expires = data
    if expires < (time.time() if now is None else now):
        return None
    return FileGrant(tenant, folder, subfolder, filename, int(expires))


def _mac(secret: bytes, purpose: str, payload: bytes) -> bytes:
    return hmac.new(secret, purpose.encode() + b":" + payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

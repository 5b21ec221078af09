"""A prompt's sensitive extra data (ComfyUI's API-node tokens: `auth_token_comfy_org`, `api_key_comfy_org`) sealed
for its trip through the cluster queue: AES-256-GCM under a key derived from the installation's master secret
(HKDF-SHA256, its own purpose: every instance shares the secret, nothing else uses this key), bound to the prompt id
as associated data, so a sealed blob opens only for the prompt it was made for. Redis sees ciphertext only; the
worker that claims the prompt opens it into the queue item's sensitive part, which ComfyUI merges into the extra data
at execution and leaves out of history and /queue."""

from __future__ import annotations

import base64
import json
import os

PURPOSE = b"tenancy/cluster-queue/sensitive-extra-data/v1"
NONCE_BYTES = 12
VERSION = "v1."


def sealing_key(master_secret: bytes) -> bytes:
    """The 256-bit key of this purpose, derived from the master secret."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if not master_secret:
        raise ValueError("an empty master secret cannot seal API-node tokens")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(master_secret)


def seal(key: bytes, prompt_id: str, sensitive: dict) -> str:
    """`sensitive` (JSON) encrypted for `prompt_id`: 'v1.' + base64url(nonce | ciphertext and tag)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps(sensitive, separators=(",", ":")).encode()
    blob = nonce + AESGCM(key).encrypt(nonce, plain, _bound(prompt_id))
    return VERSION + base64.urlsafe_b64encode(blob).decode().rstrip("=")


def unseal(key: bytes, prompt_id: str, sealed: str) -> dict | None:
    """The sensitive extra data sealed for `prompt_id` with `key`, else None (another key, another prompt's blob,
    tampered or malformed)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not isinstance(sealed, str) or not sealed.startswith(VERSION):
        return None
    try:
        text = sealed[len(VERSION):]
        blob = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if len(blob) < NONCE_BYTES + 16:
            return None
        plain = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _bound(prompt_id))
        data = json.loads(plain)
    except (InvalidTag, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _bound(prompt_id: str) -> bytes:
    return PURPOSE + b":" + str(prompt_id).encode()

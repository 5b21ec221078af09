"""Voices encrypted at rest: AES-256-GCM over the voice's safetensors bytes, one key per owner.

The key of an owner (a tenant, the shared studio folder, or the operators' global folder) is derived with
HKDF-SHA256 from the server's master secret, so no per-tenant key is ever stored.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..glm_tts.voice import Voice

MAGIC = b"GLMTTS-VOICE\x01"
NONCE_BYTES = 12
SHARED_SCOPE = "@shared"
GLOBAL_SCOPE = "@global"
KEY_INFO_PREFIX = b"glm-tts voice key:"


class VoiceUnreadable(ValueError):
    reason = "voice_unreadable"


def scope_of(tenant: str | None, shared: bool = False) -> str:
    """Whose key seals a voice: the tenant's, the shared folder's, or (no tenant) the operators'.

    `@` cannot appear in a tenant id, so the shared and global scopes never collide with a tenant."""
    if shared:
        return SHARED_SCOPE
    return tenant if tenant else GLOBAL_SCOPE


def voice_key(master_secret: bytes, scope: str) -> bytes:
    """The 256-bit AES key of `scope`, HKDF-SHA256(master secret, info = prefix + scope)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if not master_secret:
        raise ValueError("master_secret_missing: an empty master secret cannot protect voices")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO_PREFIX + scope.encode())
    return hkdf.derive(master_secret)


def seal(voice: Voice, key: bytes, scope: str) -> bytes:
    """MAGIC | nonce | AES-GCM(voice bytes), the header and scope bound as associated data."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, voice.to_bytes(), MAGIC + scope.encode())


def unseal(blob: bytes, key: bytes, scope: str, source: str = "voice") -> Voice:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE_BYTES + 16:
        raise VoiceUnreadable(f"voice_unreadable: {source} is not a sealed GLM-TTS voice")
    nonce = blob[len(MAGIC): len(MAGIC) + NONCE_BYTES]
    try:
        plain = AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES:], MAGIC + scope.encode())
    except InvalidTag:
        raise VoiceUnreadable(f"voice_unreadable: {source} does not open with this owner's key "
                              "(another owner's file, or the master secret changed)") from None
    return Voice.from_bytes(plain, source)


def write_sealed(path: Path, voice: Voice, key: bytes, scope: str) -> None:
    """Atomically, readable by the server's user only; the plaintext never touches the disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(seal(voice, key, scope))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def read_sealed(path: Path, key: bytes, scope: str) -> Voice:
    return unseal(path.read_bytes(), key, scope, path.name)

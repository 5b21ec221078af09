"""Where the GLM-TTS nodes keep and find tenant data: sealed voices, TTS profiles, the raw prompt audio.

Every lookup is scoped to the tenant whose prompt runs (or the operators' global folder without one);
names are resolved only inside that tenant's folder or the shared studio folder, never by path.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..glm_tts.voice import Voice
from ..shared_comfy.guard import context
from .profile import PROFILE_FILE, TtsProfile, load_profile
from .sealed_voice import read_sealed, scope_of, voice_key, write_sealed

log = logging.getLogger("glm_tts")
VOICES = "voices"
SHARED_PREFIX = "shared/"
VOICE_CACHE_SIZE = 256


class VoiceNotFound(FileNotFoundError):
    reason = "voice_not_found"


class VoiceRefused(PermissionError):
    reason = "voice_refused"


# -- profiles ---------------------------------------------------------------------------------------

def profile_paths(root: Path, tenant: str | None) -> tuple[Path, Path | None]:
    tenant_dir = context.tenant_data.tenant_dir
    return tenant_dir(root, None) / PROFILE_FILE, (tenant_dir(root, tenant) / PROFILE_FILE if tenant else None)


def profile_for(root: Path, tenant: str | None) -> TtsProfile:
    """The global profile merged with the tenant's own (only the global one for operators)."""
    return load_profile(*profile_paths(root, tenant))


# -- voices -----------------------------------------------------------------------------------------

def voice_names(root: Path, tenant: str | None) -> list[str]:
    """The tenant's own voices, then the shared ones as `shared/<name>`."""
    return context.tenant_data.list_items(root, tenant, VOICES)


def check_voice_name(name: str) -> str:
    """A voice name is a plain name, or `shared/<plain name>`; anything path-like is refused."""
    plain = name[len(SHARED_PREFIX):] if name.startswith(SHARED_PREFIX) else name
    try:
        if context.tenant_data.item_name(plain) != plain:
            raise context.paths.PathRefused("not in its simplest form")
    except context.paths.PathRefused as exc:
        raise VoiceRefused(f"voice_name_invalid: {name!r} is not a voice name ({exc})") from None
    return name


def voice_location(root: Path, tenant: str | None, name: str, writing: bool = False) -> tuple[Path, str]:
    """(file, key scope) of a voice the tenant names: its own folder, or the shared folder (read-only
    for tenants; operators, who run prompts without a tenant, publish shared voices)."""
    shared = check_voice_name(name).startswith(SHARED_PREFIX)
    if shared and writing and tenant is not None:
        raise VoiceRefused(f"voice_shared_read_only: {name!r} is a shared voice; only an operator can publish one")
    return context.tenant_data.item_path(root, tenant, VOICES, name), scope_of(tenant, shared)


def save_voice(root: Path, tenant: str | None, name: str, voice: Voice, secret: bytes,
               overwrite: bool = False) -> Path:
    path, scope = voice_location(root, tenant, name, writing=True)
    if path.exists() and not overwrite:
        raise VoiceRefused(f"voice_exists: a voice named {name!r} already exists; set overwrite to replace it")
    write_sealed(path, voice, voice_key(secret, scope), scope)
    _cache_put(path, voice)
    return path


def load_voice(root: Path, tenant: str | None, name: str, secret: bytes) -> Voice:
    path, scope = voice_location(root, tenant, name)
    if not path.is_file():
        raise VoiceNotFound(f"voice_not_found: there is no voice {name!r} among your voices"
                            f"{'' if name.startswith(SHARED_PREFIX) else ' (shared ones are named shared/<name>)'}")
    cached = _cache_get(path)
    if cached is not None:
        return cached
    voice = read_sealed(path, voice_key(secret, scope), scope)
    _cache_put(path, voice)
    return voice


def voice_fingerprint(root: Path, tenant: str | None, name: str) -> str:
    """Identifies the file a name resolves to for this tenant (ComfyUI cache key of the load node)."""
    path, scope = voice_location(root, tenant, name)
    stamp = path.stat() if path.is_file() else None
    return f"{scope}:{name}:{stamp.st_mtime_ns if stamp else 0}:{stamp.st_size if stamp else 0}"


def warm_up(root: Path, secret: bytes) -> list[str]:
    """Decrypt every shared voice into the voice cache; returns their names (for the start-up log)."""
    loaded = []
    for name in voice_names(root, None):
        if name.startswith(SHARED_PREFIX):
            try:
                load_voice(root, None, name, secret)
                loaded.append(name)
            except (OSError, ValueError) as exc:
                log.warning("[glm-tts] shared voice %s not preloaded: %s", name, exc)
    return loaded


_voice_cache: OrderedDict[tuple[str, int, int], Voice] = OrderedDict()
_voice_cache_lock = threading.Lock()


def _cache_key(path: Path) -> tuple[str, int, int] | None:
    try:
        stamp = path.stat()
    except OSError:
        return None
    return str(path), stamp.st_mtime_ns, stamp.st_size


def _cache_get(path: Path) -> Voice | None:
    key = _cache_key(path)
    with _voice_cache_lock:
        if key in _voice_cache:
            _voice_cache.move_to_end(key)
            return _voice_cache[key]
    return None


def _cache_put(path: Path, voice: Voice) -> None:
    key = _cache_key(path)
    if key is None:
        return
    with _voice_cache_lock:
        _voice_cache[key] = voice
        while len(_voice_cache) > VOICE_CACHE_SIZE:
            _voice_cache.popitem(last=False)


# -- the raw prompt audio ---------------------------------------------------------------------------

def upstream_strings(prompt: Mapping, node_id: str, input_name: str) -> Iterator[str]:
    """Every string input of the nodes that feed `input_name` of `node_id`, transitively (API format)."""
    link = (prompt.get(str(node_id)) or {}).get("inputs", {}).get(input_name)
    pending, seen = [link], set()
    while pending:
        link = pending.pop()
        if not (isinstance(link, list) and len(link) == 2 and str(link[0]) in prompt) or str(link[0]) in seen:
            continue
        seen.add(str(link[0]))
        for value in (prompt[str(link[0])].get("inputs") or {}).values():
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                pending.append(value)


def prompt_audio_files(prompt: Mapping, node_id: str, input_dir: Path, tenant: str | None,
                       voice_class: str = "GlmTtsVoice") -> list[Path]:
    """The input files the voice saved by `node_id` was cloned from: the files named upstream of the voice
    node's `audio` input, kept only when they lie in the tenant's input folder."""
    link = (prompt.get(str(node_id)) or {}).get("inputs", {}).get("voice")
    source = prompt.get(str(link[0])) if isinstance(link, list) and link else None
    if not source or source.get("class_type") != voice_class:
        return []
    paths = context.paths
    found: list[Path] = []
    for value in upstream_strings(prompt, str(link[0]), "audio"):
        name, folder = paths.split_annotation(value)
        if folder not in (None, "input"):
            continue
        try:
            real = paths.contained_file(input_dir, paths.clean_name(name), tenant)
        except paths.PathRefused:
            continue
        if real is not None and (path := Path(real)) not in found:
            found.append(path)
    return found


def delete_files(files: list[Path], input_dir: Path, tenant: str | None) -> list[str]:
    """Delete the files; returns their names as the tenant sees them (relative to its input folder)."""
    base = Path(os.path.realpath(input_dir / context.paths.tenant_root(tenant) if tenant else input_dir))
    deleted = []
    for path in files:
        path.unlink(missing_ok=True)
        deleted.append(os.path.relpath(path, base))
    return deleted

"""Each tenant's virtual view of input/, output/ and temp/: names in both directions, and no way out.

A tenant names files relative to its own folders; on disk they live under `<folder>/tenants/<tenant>/`.
Names are checked as text first (no absolute paths, `..`, NUL or control characters, backslashes or
%-encodings), then on disk with symlinks resolved, so nothing a tenant names can reach outside its folder.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .refusal import Refusal

TENANTS_DIR = "tenants"
FOLDERS = ("input", "output", "temp")
ANNOTATIONS = {"[output]": "output", "[input]": "input", "[temp]": "temp"}
UPLOAD_SCHEME = "upload://"
MAX_NAME = 1024
# Tokens ComfyUI substitutes in filename_prefix; they are not %-encodings.
PREFIX_TOKENS = re.compile(r"%(width|height|year|month|day|hour|minute|second)%")
PERCENT_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
DRIVE = re.compile(r"[A-Za-z]:")


class PathRefused(ValueError):
    reason = "path_outside_tenant"

    def to_refusal(self) -> Refusal:
        """A name that would leave the caller's folder is the caller's fault: 403 with the reason."""
        return Refusal(403, self.reason, str(self))


def clean_name(name: object, *, allow_tokens: bool = False) -> str:
    """A normalised relative POSIX name that stays inside whatever folder it is joined to."""
    if not isinstance(name, str):
        raise PathRefused(f"expected a file name, got {type(name).__name__}")
    if len(name) > MAX_NAME:
        raise PathRefused("name too long")
    if CONTROL_OR_SURROGATE.search(name):
        raise PathRefused("control character or lone surrogate in name")
    if "\\" in name:
        raise PathRefused("backslash in name")
    text = PREFIX_TOKENS.sub("", name) if allow_tokens else name
    if PERCENT_ENCODED.search(text):
        raise PathRefused("%-encoded characters in name")
    if name.startswith(("/", "~")) or DRIVE.match(name):
        raise PathRefused("absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathRefused("`..` in name")
    return "/".join(parts)


def tenant_root(tenant: str) -> str:
    return f"{TENANTS_DIR}/{tenant}"


def split_annotation(value: str) -> tuple[str, str | None]:
    """ComfyUI's rule: a trailing `[output]`/`[input]`/`[temp]` picks the folder and drops one more char."""
    for suffix, folder in ANNOTATIONS.items():
        if value.endswith(suffix):
            return value[: -len(suffix) - 1], folder
    return value, None


@dataclass(frozen=True)
class FileRef:
    """A file a prompt input names, as ComfyUI will see it."""

    folder: str  # input | output | temp
    relative: str  # relative to the folder root on disk
    comfy_value: str  # what the input is rewritten to
    is_folder: bool = False  # names a folder (a folder combo's value), not a file


def map_file_input(tenant: str, value: object) -> FileRef:
    """A tenant's file-input value -> the real one (previews too: they are written to temp/tenants/<t>/)."""
    if not isinstance(value, str):
        raise PathRefused(f"expected a file name, got {type(value).__name__}")
    if value.startswith(UPLOAD_SCHEME):
        owner, _, name = value[len(UPLOAD_SCHEME):].partition("/")
        if owner != tenant:
            raise PathRefused("upload:// URI of another tenant")
        relative = f"{tenant_root(tenant)}/{_plain(name)}"
        return FileRef("input", relative, relative)
    name, annotated = split_annotation(value)
    name = _plain(name)
    folder = annotated or "input"
    relative = f"{tenant_root(tenant)}/{name}"
    return FileRef(folder, relative, f"{relative} [{folder}]" if annotated else relative)


def map_folder_input(tenant: str, value: object, folder: str = "input") -> FileRef:
    """A tenant's folder-combo value (a subfolder of its input or output folder) -> the real one."""
    relative = f"{tenant_root(tenant)}/{_non_empty(clean_name(value))}"
    return FileRef(folder, relative, relative, is_folder=True)


def map_output_prefix(tenant: str, prefix: object) -> str:
    name = clean_name(prefix if prefix != "" else "ComfyUI", allow_tokens=True)
    return f"{tenant_root(tenant)}/{_non_empty(name)}"


def map_subfolder(tenant: str, subfolder: object) -> str:
    """A tenant's upload or /view subfolder -> the real one."""
    cleaned = clean_name(subfolder or "")
    return f"{tenant_root(tenant)}/{cleaned}".rstrip("/")


def virtual_subfolder(tenant: str, subfolder: str) -> str | None:
    """A real subfolder -> the tenant's name for it, or None when it is not the tenant's."""
    root = tenant_root(tenant)
    if subfolder == root:
        return ""
    if subfolder.startswith(root + "/"):
        return subfolder[len(root) + 1:]
    return None


def contained(folder_root: Path | str, relative: str, tenant: str | None = None) -> str:
    """The real path of `relative` under `folder_root`, refusing anything that resolves (symlinks
    followed) outside `folder_root/tenants/<tenant>` (or outside `folder_root` when tenant is None)."""
    return _contained(folder_root, relative, tenant)[0]


def contained_file(folder_root: Path | str, relative: str, tenant: str | None = None) -> str | None:
    """contained() when that is a regular file, else None (nothing there, or a folder)."""
    target, mode = _contained(folder_root, relative, tenant)
    if mode is None:  # resolved the slow way: not looked at yet
        try:
            mode = os.stat(target).st_mode
        except OSError:
            return None
    return target if stat.S_ISREG(mode) else None


def _contained(folder_root: Path | str, relative: str, tenant: str | None) -> tuple[str, int | None]:
    """(real path, its lstat mode: 0 when missing, None when not looked at)."""
    root = os.fspath(folder_root)
    base = _real_base(root, tenant)
    prefix = tenant_root(tenant) + "/" if tenant is not None else ""
    start, rest = (base, relative[len(prefix):]) if prefix and relative.startswith(prefix) else \
        (_real_base(root, None), relative)
    # The slow way joins with pathlib, which drops empty and `.` parts: realpath mishandles `loop//x`.
    target, mode = _resolved_below(start, rest) or (os.path.realpath(Path(root) / relative), None)
    if target != base and not target.startswith(base.rstrip(os.sep) + os.sep):
        raise PathRefused("resolves outside the tenant's folder")
    return target, mode


def _resolved_below(real_start: str, relative: str) -> tuple[str, int] | None:
    """What realpath(real_start/relative) gives, checking only the components below `real_start`, with the last
    one's lstat mode (0: missing); None when a component needs realpath itself (a symlink, `.`, `..`, an empty
    part, an absolute name)."""
    parts = relative.split("/")
    if relative.startswith("/") or any(part in ("", ".", "..") for part in parts):
        return None
    path, mode = real_start, 0
    for part in parts:
        path = f"{path}/{part}"
        try:
            mode = os.lstat(path).st_mode
        except OSError:  # missing (or not a folder): realpath keeps the rest as written, and so do we
            return f"{real_start}/{relative}", 0
        if stat.S_ISLNK(mode):
            return None
    return path, mode


@lru_cache(maxsize=4096)
def _real_base(folder_root: str, tenant: str | None) -> str:
    """The folder a name must resolve into. Kept: the folder roots and tenant folders are the guard's own, and
    only an operator could make one a symlink; what a name resolves to is checked afresh every time."""
    base = os.path.realpath(folder_root)
    return base if tenant is None else os.path.realpath(os.path.join(base, tenant_root(tenant)))


def _plain(name: str) -> str:
    """A cleaned, non-empty name that ComfyUI will not read a second annotation from."""
    cleaned = _non_empty(clean_name(name))
    if split_annotation(cleaned)[1] is not None:
        raise PathRefused("a folder annotation inside the name")
    return cleaned


def _non_empty(name: str) -> str:
    if not name:
        raise PathRefused("empty file name")
    return name

"""First start: the tenancy folder with a commented default config and a 0600 JWT secret.

Shared by `python -m tenancy init` and by the plugin when it starts in a ComfyUI that has no config yet.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from . import config as config_module
from . import default_config

MODEL_FOLDERS = ("sonic", "glm_tts")


def initialise(tenancy_dir: Path, config_path: Path | None = None, store: str | None = None,
               models_dir: Path | None = None) -> list[str]:
    """Write what is missing; never overwrite. Returns a line per thing created."""
    done: list[str] = []
    for name in MODEL_FOLDERS if models_dir else ():
        folder = models_dir / name
        if not folder.is_dir():
            folder.mkdir(parents=True)
            done.append(f"created model folder {folder}")
    tenancy_dir.mkdir(parents=True, exist_ok=True)
    config_path = config_path or tenancy_dir / config_module.CONFIG_FILE
    if not config_path.exists():
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(default_config.default_text(store), encoding="utf-8")
        done.append(f"wrote default config {config_path}")
    settings = config_module.load(config_path)
    for what, name in (("JWT secret", settings.auth.jwt_secret_file), ("master secret", settings.master_secret_file)):
        secret = settings.path(name)
        if not secret.exists():
            write_secret(secret)
            done.append(f"generated {what} {secret} (0600)")
    return done


def write_secret(path: Path, nbytes: int = 48) -> None:
    """A random secret readable by the owner only, created atomically with those permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(nbytes) + "\n")


def read_secret(path: Path) -> bytes:
    return path.read_text(encoding="utf-8").strip().encode()

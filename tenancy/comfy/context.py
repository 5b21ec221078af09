"""What a running node may ask the guard: whose prompt is this, where the tenancy folder is, the master secret.

The nodes' one door to the guard (the import-linter contract "Nodes reach the guard through one module only"):
besides the three questions it hands on `paths` and `tenant_data`, the guard's pure rules for names and
tenant folders, so a node resolves a name exactly as the guard's own file routes do.
Without the guard (not installed, or `enabled: false`) the tenant is None and global settings apply.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .. import bootstrap, paths, tenant_data
from .. import config as config_module

if TYPE_CHECKING:
    from .services import GuardServices

__all__ = ["config_path", "current_tenant", "master_secret", "paths", "tenancy_dir", "tenant_data"]

_services: GuardServices | None = None  # the installed guard's GuardServices, when there is one


def config_path() -> Path:
    """The config file: $TENANCY_CONFIG, else `tenancy/config.yaml` in ComfyUI's user folder."""
    explicit = os.environ.get(config_module.ENV_CONFIG)
    if explicit:
        return Path(explicit)
    import folder_paths

    return Path(folder_paths.get_user_directory()) / "tenancy" / config_module.CONFIG_FILE


def attach(services: GuardServices) -> None:
    global _services
    _services = services


def current_prompt_id() -> str | None:
    utils = sys.modules.get("comfy_execution.utils")
    context = utils.get_executing_context() if utils and hasattr(utils, "get_executing_context") else None
    if context is not None and getattr(context, "prompt_id", None):
        return context.prompt_id
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    return getattr(instance, "last_prompt_id", None)


def current_tenant() -> str | None:
    """The tenant whose prompt is executing, or None for operators and unguarded servers."""
    if _services is None:
        return None
    return _services.owners.get(current_prompt_id() or "") or None


def tenancy_dir() -> Path:
    """The folder with the config, secrets and per-tenant data."""
    if _services is not None:
        return Path(_services.settings.base_dir)
    return config_path().parent


def master_secret() -> bytes:
    """The server's master secret (config `master_secret_file`, generated 0600 at first start), read once: voices
    are sealed with keys derived from it, and every voice save and load asks for it."""
    if _services is not None:
        return _secret_at(_services.settings.path(_services.settings.master_secret_file))
    return _secret_at(_secret_path_in(config_path()))


@lru_cache(maxsize=8)
def _secret_path_in(config_file: Path) -> Path:
    """Where the config at `config_file` keeps the master secret (the YAML is read and validated once)."""
    settings = config_module.load(config_file)
    return settings.path(settings.master_secret_file)


@lru_cache(maxsize=8)
def _secret_at(path: Path) -> bytes:
    # A missing file is not cached (lru_cache keeps no exceptions): `python -m tenancy init` fixes it live.
    if not path.is_file():
        raise FileNotFoundError(f"master_secret_missing: {path} does not exist; run `python -m tenancy init` "
                                "(voices are encrypted with a key derived from it)")
    return bootstrap.read_secret(path)

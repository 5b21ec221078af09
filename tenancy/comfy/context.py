"""What a running node may ask the guard: whose prompt is this, and where the tenancy folder is.

Without the guard (not installed, or `enabled: false`) the tenant is None and global settings apply.
"""

from __future__ import annotations

import sys
from pathlib import Path

_guard = None


def attach(guard) -> None:
    global _guard
    _guard = guard


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
    if _guard is None:
        return None
    return _guard.owners.get(current_prompt_id() or "") or None


def tenancy_dir() -> Path:
    """The folder with the config, secrets and per-tenant data."""
    if _guard is not None:
        return Path(_guard.settings.base_dir)
    from .startup import config_path

    return config_path().parent

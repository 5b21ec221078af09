"""Installing the guard into ComfyUI's running PromptServer at plugin import time."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aiohttp import web

from .. import bootstrap
from .. import config as config_module

log = logging.getLogger("tenancy")
REQUIRE_GUARD_ENV = "TENANCY_REQUIRE_GUARD"


def config_path() -> Path:
    explicit = os.environ.get(config_module.ENV_CONFIG)
    if explicit:
        return Path(explicit)
    import folder_paths

    return Path(folder_paths.get_user_directory()) / "tenancy" / config_module.CONFIG_FILE


def install(server) -> None:
    """Load the config and put the guard in front of every route; fail closed when that is impossible."""
    path = config_path()
    try:
        for line in bootstrap.initialise(path.parent, path, models_dir=_models_dir()):
            log.info("[tenancy] %s", line)
        settings = config_module.load(path)
    except (config_module.ConfigError, OSError) as exc:
        _refuse_to_serve(server, exc)
        return
    if not settings.enabled:
        log.warning("[tenancy] GUARD DISABLED by `enabled: false` in %s: this ComfyUI is NOT multi-tenant "
                    "and every caller can reach every route", path)
        return
    server.routes.get("/tenancy/health")(_health)
    log.info("[tenancy] guard installed (config %s, store %s)", path, settings.store)


def _models_dir() -> Path:
    import folder_paths

    return Path(folder_paths.models_dir)


def _refuse_to_serve(server, exc: Exception) -> None:
    """A broken config must never leave the server open: exit under `serve`, answer 503 otherwise."""
    log.error("[tenancy] cannot install the guard: %s", exc)
    if os.environ.get(REQUIRE_GUARD_ENV) == "1":
        log.error("[tenancy] refusing to run unguarded; stopping ComfyUI")
        logging.shutdown()
        os._exit(78)

    @web.middleware
    async def closed(request: web.Request, handler):
        return web.json_response({"error": {"type": "guard_misconfigured", "message": str(exc),
                                            "details": "fix the tenancy config and restart"}}, status=503)

    server.app.middlewares.insert(0, closed)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})

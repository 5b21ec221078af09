"""Installing the guard into ComfyUI's running PromptServer at plugin import time, and the operator key of a
first start."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

from aiohttp import web

from .. import bootstrap
from .. import config as config_module
from ..accounts import operator_key_if_none
from ..paths import TENANTS_DIR
from ..store import StoreUnavailable, open_store
from ..store.breaker import Breaker
from . import context, http
from .api import admin, oidc
from .api import session as tenancy_routes
from .execution import confinement as execution_confinement
from .execution import queue_watch
from .middleware import Guard
from .surfaces import files as file_surfaces
from .surfaces import jobs as job_surfaces
from .surfaces import prompt as prompt_surface
from .surfaces import queue as queue_surfaces
from .surfaces import user_data as user_surfaces
from .surfaces import websocket

log = logging.getLogger("tenancy")


def install(server, warmups: dict | None = None, trusted_classes=()) -> Guard | None:
    """Load the config and put the guard in front of every route; fail closed when that is impossible."""
    import folder_paths

    path = context.config_path()
    try:
        for line in bootstrap.initialise(path.parent, path, models_dir=Path(folder_paths.models_dir)):
            log.info("[tenancy] %s", line)
        settings = config_module.load(path)
        if not settings.enabled:
            log.warning("[tenancy] GUARD DISABLED by `enabled: false` in %s: this ComfyUI is NOT multi-tenant and "
                        "every caller can reach every route", path)
            return None
        http.check_request_hooks()
        store = Breaker(open_store(settings.store, settings.path("."), timeout_s=settings.store_timeout_s,
                                   other_process_changes_s=settings.auth.other_process_changes_s),
                        settings.store_retry_s)
        folders = {"input": Path(folder_paths.get_input_directory()),
                   "output": Path(folder_paths.get_output_directory()),
                   "temp": Path(folder_paths.get_temp_directory())}
        for folder in ("input", "output"):  # there from the start, so combos listing folders show it
            (folders[folder] / TENANTS_DIR).mkdir(parents=True, exist_ok=True)
        guard = Guard(server, settings, store, folders)
        _enable_per_tenant_user_data()
        user_surfaces.check_multi_user(server)
        execution_confinement.install(guard, trusted_classes)
        queue_watch.install(type(server.prompt_queue), guard.queued)
    except (config_module.ConfigError, StoreUnavailable, OSError, ValueError, RuntimeError) as exc:
        _refuse_to_serve(server, exc)
        return None
    context.attach(guard)
    register_surfaces(guard)
    tenancy_routes.add_routes(server.routes, guard)
    admin.add_routes(server.routes, guard)
    oidc.add_routes(server.routes, guard)
    server.app.middlewares.insert(0, guard.middleware)
    websocket.install_message_routing(guard)
    for handler in logging.getLogger().handlers:
        handler.addFilter(websocket.TenantLogTag(guard))
    server.app.on_startup.append(lambda app: ensure_operator_key(guard))
    server.app.on_startup.append(lambda app: _start_reaper(app, guard))
    if settings.warmup:
        server.app.on_startup.append(lambda app: _start_warmup(settings.warmup, warmups or {}))
    log.info("[tenancy] guard installed (config %s, store %s, %d plans)", path, store.description,
             len(settings.plans))
    return guard


async def _start_warmup(wanted: dict, warmups: dict) -> None:
    """Preload the configured models in the background, so the first tenant does not wait for them."""

    def run() -> None:
        for name, options in wanted.items():
            if name not in warmups:
                log.error("[tenancy] warmup: no warm-up for %r (known: %s)", name, ", ".join(sorted(warmups)))
                continue
            try:
                warmups[name](**(options or {}))
                log.info("[tenancy] warmup: %s ready", name)
            except Exception:  # a failed preload must not stop the server; the first prompt will load instead
                log.exception("[tenancy] warmup of %s failed", name)

    threading.Thread(target=run, name="tenancy-warmup", daemon=True).start()


async def _start_reaper(app: web.Application, guard: Guard) -> None:
    loop = asyncio.get_running_loop()
    app["tenancy.outbox"] = loop.create_task(guard.accounting.outbox.run())
    app["tenancy.reaper"] = loop.create_task(guard.accounting.reaper())
    app["tenancy.uploads"] = loop.create_task(guard.uploads.run())


def register_surfaces(guard: Guard) -> None:
    def bind(surface):
        return lambda request, handler, principal: surface(guard, request, handler, principal)

    table = {
        ("POST", "/prompt"): prompt_surface.post_prompt,
        ("POST", "/upload/image"): file_surfaces.upload,
        ("POST", "/upload/mask"): file_surfaces.upload,
        ("GET", "/view"): file_surfaces.view,
        ("GET", "/object_info"): file_surfaces.object_info,
        ("GET", "/object_info/{node_class}"): file_surfaces.object_info,
        ("GET", "/history"): queue_surfaces.history,
        ("GET", "/history/{prompt_id}"): queue_surfaces.history,
        ("POST", "/history"): queue_surfaces.edit_history,
        ("GET", "/queue"): queue_surfaces.queue,
        ("POST", "/queue"): queue_surfaces.edit_queue,
        ("POST", "/interrupt"): queue_surfaces.interrupt,
        ("GET", "/jobs"): job_surfaces.jobs,
        ("GET", "/jobs/{job_id}"): job_surfaces.job,
        ("POST", "/jobs/{job_id}/cancel"): job_surfaces.cancel_job,
        ("POST", "/jobs/cancel"): job_surfaces.cancel_jobs,
        ("GET", "/ws"): websocket.connect,
        ("GET", "/prompt"): queue_surfaces.queue_status,
        ("GET", "/users"): user_surfaces.users,
        ("GET", "/system_stats"): user_surfaces.system_stats,
        ("GET", "/features"): user_surfaces.features,
    }
    guard.surfaces.update({route: bind(surface) for route, surface in table.items()})


def _enable_per_tenant_user_data() -> None:
    """ComfyUI keeps settings, saved workflows and asset owners per `comfy-user` only in multi-user mode; the
    guard sets that user from the identity on every request, so each tenant gets its own."""
    from comfy.cli_args import args

    if hasattr(args, "multi_user"):
        args.multi_user = True


def _refuse_to_serve(server, exc: Exception) -> None:
    """A broken config must never leave the server open: exit under `serve`, answer 503 otherwise."""
    log.error("[tenancy] cannot install the guard: %s", exc)
    if os.environ.get(config_module.REQUIRE_GUARD_ENV) == "1":
        log.error("[tenancy] refusing to run unguarded; stopping ComfyUI")
        logging.shutdown()
        os._exit(78)

    @web.middleware
    async def closed(request: web.Request, handler):
        return web.json_response({"error": {"type": "guard_misconfigured", "message": str(exc),
                                            "details": "fix the tenancy config and restart"}}, status=503)

    server.app.middlewares.insert(0, closed)


async def ensure_operator_key(guard: Guard) -> None:
    """First start inside ComfyUI: print a one-time operator key when no operator exists yet."""
    key = await operator_key_if_none(guard.store)
    if key:
        log.warning("[tenancy] no operator yet: operator API key (shown once, stored hashed): %s", key)
        log.warning("[tenancy] add a named operator with `python -m tenancy admin add NAME` and revoke this key")

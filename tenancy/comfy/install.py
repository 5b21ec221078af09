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
from . import context, http, services
from .api import add_routes
from .execution import cluster_history, cluster_queue, confinement, queue_watch, relay
from .execution.messages import TenantLogTag, install_message_routing
from .middleware import Guard, bind
from .services import GuardServices
from .surfaces import SURFACES
from .surfaces.user_data import check_multi_user

log = logging.getLogger("tenancy")


def install(server, warmups: dict | None = None, trusted_classes=()) -> Guard | None:
    """Load the config and put the guard in front of every route; fail closed when that is impossible."""
    path = context.config_path()
    try:
        settings = _load(path)
        if not settings.enabled:
            log.warning("[tenancy] GUARD DISABLED by `enabled: false` in %s: this ComfyUI is NOT multi-tenant and "
                        "every caller can reach every route", path)
            return None
        built = _hook_into_comfy(server, settings, trusted_classes)
    except (config_module.ConfigError, StoreUnavailable, OSError, ValueError, RuntimeError) as exc:
        _refuse_to_serve(server, exc)
        return None
    guard = Guard(built, bind(built, SURFACES))
    _serve(server, built, guard, warmups or {})
    log.info("[tenancy] guard installed (config %s, store %s, %d plans)", path, built.store.description,
             len(settings.plans))
    return guard


def _load(path: Path) -> config_module.Config:
    """The config, with the tenancy folder, its secrets and the model folders made on a first start."""
    import folder_paths

    for line in bootstrap.initialise(path.parent, path, models_dir=Path(folder_paths.models_dir)):
        log.info("[tenancy] %s", line)
    return config_module.load(path)


def _hook_into_comfy(server, settings: config_module.Config, trusted_classes) -> GuardServices:
    """The collaborators, and the hooks into ComfyUI that must all hold before any route is guarded (any that
    cannot be made refuses the start)."""
    import folder_paths

    http.check_request_hooks()
    store = Breaker(open_store(settings.store, settings.path("."), timeout_s=settings.store_timeout_s,
                               other_process_changes_s=settings.auth.other_process_changes_s),
                    settings.store_retry_s)
    folders = {"input": Path(folder_paths.get_input_directory()),
               "output": Path(folder_paths.get_output_directory()),
               "temp": Path(folder_paths.get_temp_directory())}
    for folder in ("input", "output"):  # there from the start, so combos listing folders show it
        (folders[folder] / TENANTS_DIR).mkdir(parents=True, exist_ok=True)
    built = services.build(server, settings, store, folders, Path(folder_paths.get_user_directory()))
    _enable_per_tenant_user_data()
    check_multi_user(server)
    confinement.install(settings, built.owners, built.audit, trusted_classes)
    queue_watch.install(type(server.prompt_queue), built.queued)
    # each off by default: the services come back as they are
    return relay.install(cluster_history.install(cluster_queue.install(built)))


def _serve(server, built: GuardServices, guard: Guard, warmups: dict) -> None:
    """The guard in front of every route, its own routes, its message routing and its background work."""
    context.attach(built)
    add_routes(server.routes, built)
    server.app.middlewares.insert(0, guard.middleware)
    if built.relay is not None:
        built.relay.wire()  # under the guard's routing, which the next line puts in front of it
    install_message_routing(built)
    for handler in logging.getLogger().handlers:
        handler.addFilter(TenantLogTag(built.owners, server))
    server.app.on_startup.append(lambda app: ensure_operator_key(built))
    server.app.on_startup.append(lambda app: _start_background(app, built))
    if built.settings.warmup:
        server.app.on_startup.append(lambda app: _start_warmup(built.settings.warmup, warmups))


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


async def _start_background(app: web.Application, built: GuardServices) -> None:
    """The accounting's outbox and reaper, the outputs' uploads and retention sweep and the cluster queue's
    heartbeat and reaper, for as long as the server runs."""
    loop = asyncio.get_running_loop()
    app["tenancy.outbox"] = loop.create_task(built.accounting.outbox.run())
    app["tenancy.reaper"] = loop.create_task(built.accounting.reaper())
    app["tenancy.uploads"] = loop.create_task(built.uploads.run())
    if built.retention is not None:
        app["tenancy.retention"] = loop.create_task(built.retention.run())
    if built.accounting.cluster is not None:
        await cluster_queue.start(app, built.accounting.cluster, built.server.prompt_queue)
    if built.relay is not None:
        built.relay.start(app)


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


async def ensure_operator_key(built: GuardServices) -> None:
    """First start inside ComfyUI: print a one-time operator key when no operator exists yet."""
    key = await operator_key_if_none(built.store)
    if key:
        log.warning("[tenancy] no operator yet: operator API key (shown once, stored hashed): %s", key)
        log.warning("[tenancy] add a named operator with `python -m tenancy admin add NAME` and revoke this key")

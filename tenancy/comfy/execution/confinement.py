"""Tenant isolation where nodes execute: while a tenant's prompt is validated or runs, ComfyUI's name resolvers
answer inside the tenant's folders, cached node outputs are the tenant's own (in its own cache set), and an audit
hook refuses any file a node opens, lists, removes or renames outside them (`tenancy.confinement` decides)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sys

from ...audit import AuditLog
from ...config import Config
from ...owners import Owners
from ...paths import FOLDERS, tenant_root
from ...read_back import owner_in
from . import cache_keys, file_watch, name_resolvers, tenant_caches
from .tenant_execution import Execution, current_execution, layout, root, runtime

log = logging.getLogger("tenancy")
SWITCH_ENV = "TENANCY_EXEC_CONFINEMENT"  # `off`: no audit hook (resolvers and cache keys stay confined)


@contextlib.contextmanager
def confined(tenant: str | None, prompt: dict, prompt_id: str | None = None):
    """Everything in this context (this thread, and tasks it starts) runs as `tenant`; None: unconfined."""
    if not tenant or "owners" not in runtime:
        yield None
        return
    classes = {str(k): v.get("class_type", "?") for k, v in prompt.items() if isinstance(v, dict)} \
        if isinstance(prompt, dict) else {}
    execution = Execution(runtime["audit"], tenant, prompt_id, classes, layout())
    _ensure_folders(execution)
    token = current_execution.set(execution)
    try:
        yield execution
    finally:
        current_execution.reset(token)


def _wrap_executor(executor_cls) -> None:
    """PromptExecutor.execute_async (or execute, where there is no async one) runs inside `confined`."""
    name = "execute_async" if hasattr(executor_cls, "execute_async") else "execute"
    original = getattr(executor_cls, name)
    signature = inspect.signature(original)

    def tenant_of(args, kwargs) -> tuple[str | None, dict, str | None, object]:
        bound = signature.bind_partial(*args, **kwargs).arguments
        prompt_id, prompt = bound.get("prompt_id"), bound.get("prompt") or {}
        owner = runtime["owners"].get(prompt_id or "")
        if owner is None:
            owner = owner_in(bound.get("extra_data"))
        return owner or None, prompt, prompt_id, bound.get("self")

    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def execute(*args, **kwargs):
            tenant, prompt, prompt_id, executor = tenant_of(args, kwargs)
            with confined(tenant, prompt, prompt_id), tenant_caches.private(executor, tenant):
                return await original(*args, **kwargs)
    else:
        @functools.wraps(original)
        def execute(*args, **kwargs):
            tenant, prompt, prompt_id, executor = tenant_of(args, kwargs)
            with confined(tenant, prompt, prompt_id), tenant_caches.private(executor, tenant):
                return original(*args, **kwargs)

    setattr(executor_cls, name, execute)


def _ensure_folders(execution: Execution) -> None:
    """The tenant's folders exist before its nodes run (creating `tenants/` itself is no tenant's business)."""
    made = runtime.setdefault("made", set())
    if execution.tenant in made:
        return
    for folder in FOLDERS:
        os.makedirs(os.path.join(root(folder), tenant_root(execution.tenant)), exist_ok=True)
    made.add(execution.tenant)


def install(settings: Config, owners: Owners, audit: AuditLog, trusted_classes=()) -> None:
    """Wire the confinement into the running ComfyUI (feature-detected); the audit hook unless switched off."""
    import execution as comfy_execution
    import folder_paths

    runtime.update(owners=owners, audit=audit, tenancy_dir=settings.base_dir, trusted=tuple(trusted_classes))
    utils = sys.modules.get("comfy_execution.utils")
    runtime["node_context"] = getattr(utils, "current_executing_context", None)
    name_resolvers.install(folder_paths)
    _wrap_executor(comfy_execution.PromptExecutor)
    if not tenant_caches.install(comfy_execution.PromptExecutor, settings.private_caches):
        log.warning("[tenancy] this ComfyUI's executor has no reset(): tenants share one node cache")
    caching = sys.modules.get("comfy_execution.caching")
    if caching is None or not cache_keys.install(caching):
        raise RuntimeError("cannot tell ComfyUI's cached node outputs apart per tenant (comfy_execution.caching)")
    if os.environ.get(SWITCH_ENV, "on").lower() == "off":
        log.warning("[tenancy] %s=off: nodes are confined by name only; a node that opens paths itself is not "
                    "stopped at other tenants' files", SWITCH_ENV)
        return
    sys.addaudithook(file_watch.audit)

"""Cached node outputs: every cache key a tenant's prompt makes carries the tenant, so no output or node object
is reused across tenants."""

from __future__ import annotations

import functools
import inspect

from .tenant_execution import Execution, current_execution

CACHE_TAG = "tenancy.tenant"


def install(caching) -> int:
    """Every cache key a tenant's prompt makes carries the tenant: no output or node object is reused across
    tenants. Returns how many key classes were wrapped (0: this ComfyUI builds keys some other way)."""
    base = getattr(caching, "CacheKeySet", None)
    wrapped = 0
    for cls in list(vars(caching).values()):
        if isinstance(cls, type) and base is not None and issubclass(cls, base) and "add_keys" in vars(cls):
            cls.add_keys = _tagging(cls.add_keys)
            wrapped += 1
    return wrapped


def _tag(execution: Execution, keys: dict, before: set) -> None:
    for node_id in [k for k in keys if k not in before]:
        keys[node_id] = (CACHE_TAG, execution.tenant, keys[node_id])


def _tagging(add_keys):
    if inspect.iscoroutinefunction(add_keys):
        @functools.wraps(add_keys)
        async def tagged(self, node_ids, *args, **kwargs):
            execution = current_execution.get()
            if execution is None:
                return await add_keys(self, node_ids, *args, **kwargs)
            before = (set(self.keys), set(self.subcache_keys))
            result = await add_keys(self, node_ids, *args, **kwargs)
            _tag(execution, self.keys, before[0])
            _tag(execution, self.subcache_keys, before[1])
            return result
    else:
        @functools.wraps(add_keys)
        def tagged(self, node_ids, *args, **kwargs):
            execution = current_execution.get()
            if execution is None:
                return add_keys(self, node_ids, *args, **kwargs)
            before = (set(self.keys), set(self.subcache_keys))
            result = add_keys(self, node_ids, *args, **kwargs)
            _tag(execution, self.keys, before[0])
            _tag(execution, self.subcache_keys, before[1])
            return result
    return tagged



"""Each tenant's own node-output cache, as if it had a ComfyUI of its own.

ComfyUI's executor keeps one cache set (`PromptExecutor.caches`: outputs and node objects) for every prompt it
runs; its default (classic) cache keeps only the last prompt's outputs, so another tenant's prompt in between
evicts a tenant's cache and its identical re-run executes again. Here the executor runs each prompt with its
owner's cache set, one per owner for the `private_caches` most recently active owners (operators' prompts share
one); ComfyUI's own reset (`/free` with free_memory) forgets them all. The keys stay tenant-tagged
(`cache_keys`), so even one shared set never hands a tenant another's outputs."""

from __future__ import annotations

import contextlib
import functools
import logging

from ...recent_owners import RecentOwners

log = logging.getLogger("tenancy")
state: dict = {}  # "kept": the RecentOwners of cache sets, once installed


def install(executor_cls, limit: int) -> bool:
    """Keeps up to `limit` owners' cache sets; False where this ComfyUI's executor keeps no `caches` we know."""
    reset = getattr(executor_cls, "reset", None)
    if reset is None:
        return False
    state["kept"] = RecentOwners(limit)

    @functools.wraps(reset)
    def reset_all(self, *args, **kwargs):
        result = reset(self, *args, **kwargs)
        state["kept"].clear()
        return result

    executor_cls.reset = reset_all
    return True


@contextlib.contextmanager
def private(executor, owner: str | None):
    """The executor runs this prompt with its owner's cache set (made empty the first time, or again after the
    owner fell out of the most recently active)."""
    kept = state.get("kept")
    if kept is None or not _knows(executor):
        yield
        return
    executor.caches, dropped = kept.take(owner, lambda: _fresh(executor))
    if dropped:
        log.debug("[tenancy] %d idle owner cache set(s) dropped", len(dropped))
    yield


def _knows(executor) -> bool:
    known = all(hasattr(executor, name) for name in ("caches", "cache_type", "cache_args"))
    if not known and not state.get("warned"):
        state["warned"] = True
        log.warning("[tenancy] this ComfyUI's executor keeps no `caches` set: tenants share one node cache")
    return known


def _fresh(executor):
    """A new, empty cache set of the kind ComfyUI was started with (--cache-lru, --cache-none, ...)."""
    return type(executor.caches)(cache_type=executor.cache_type, cache_args=executor.cache_args)

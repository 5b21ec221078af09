"""ComfyUI's prompt queue tells the guard's queue index (`tenancy.queue_index`) of every change it makes, under
its own lock: queued (`put`), started (`get`), finished (`task_done`), deleted (`delete_queue_item`), wiped
(`wipe_queue`). So a tenant's queue is read from the index, not by looking at the owner of every queued item."""

from __future__ import annotations

import functools

from ...queue_index import QueueIndex
from ...read_back import owner_in

WATCHED = ("put", "get", "task_done", "wipe_queue", "delete_queue_item")


def install(queue_cls, index: QueueIndex) -> None:
    """Wrap the queue's changes (all in one class: a ComfyUI without one of them cannot be indexed)."""
    missing = [name for name in WATCHED if not callable(getattr(queue_cls, name, None))]
    if missing:
        raise RuntimeError(f"cannot index ComfyUI's queue per tenant: PromptQueue has no {', '.join(missing)}")
    put, get, task_done, wipe_queue, delete_queue_item = (getattr(queue_cls, name) for name in WATCHED)

    @functools.wraps(put)
    def put_indexed(self, item, *args, **kwargs):
        with self.mutex:
            result = put(self, item, *args, **kwargs)
            index.queued(owner_in(item[3]) if len(item) > 3 else None, item)
            return result

    @functools.wraps(get)
    def get_indexed(self, *args, **kwargs):
        with self.mutex:  # the queue's wait for work releases it (a Condition on the same lock)
            taken = get(self, *args, **kwargs)
            if taken is not None:
                index.started(taken[0], taken[1])
            return taken

    @functools.wraps(task_done)
    def task_done_indexed(self, item_id, *args, **kwargs):
        with self.mutex:
            result = task_done(self, item_id, *args, **kwargs)
            index.finished(item_id)
            return result

    @functools.wraps(wipe_queue)
    def wipe_queue_indexed(self, *args, **kwargs):
        with self.mutex:
            result = wipe_queue(self, *args, **kwargs)
            index.wiped()
            return result

    @functools.wraps(delete_queue_item)
    def delete_queue_item_indexed(self, function, *args, **kwargs):
        chosen = []

        def choosing(item):
            if function(item):
                chosen.append(item)
                return True
            return False

        with self.mutex:
            deleted = delete_queue_item(self, choosing, *args, **kwargs)
            if deleted and chosen:
                index.removed(chosen[-1][1])
            return deleted

    for name, wrapper in zip(WATCHED, (put_indexed, get_indexed, task_done_indexed, wipe_queue_indexed,
                                       delete_queue_item_indexed), strict=True):
        setattr(queue_cls, name, wrapper)

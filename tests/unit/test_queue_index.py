"""The queue index follows ComfyUI's queue change by change, so each owner's queue is read without the others'."""

from __future__ import annotations

from tenancy.queue_index import QueueIndex


def item(number, prompt_id):
    return (number, prompt_id, {}, {}, [])


def test_each_owner_reads_its_own_pending_in_run_order_and_its_running():
    index = QueueIndex()
    index.queued("a", item(5, "a2"))
    index.queued("b", item(1, "b1"))
    index.queued("a", item(2, "a1"))
    index.queued(None, item(3, "op"))
    assert [i[1] for i in index.pending("a")] == ["a1", "a2"]
    index.started(item(1, "b1"), run_id=0)
    assert [i[1] for i in index.running("b")] == ["b1"] and index.pending("b") == []
    assert (index.remaining("a"), index.remaining("b"), index.remaining(None), index.remaining("c")) == (2, 1, 1, 0)
    index.finished(0)
    assert index.remaining("b") == 0 and index.running("b") == []


def test_deleted_and_wiped_prompts_leave_it_and_running_ones_stay():
    index = QueueIndex()
    for number, (owner, prompt_id) in enumerate([("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2")]):
        index.queued(owner, item(number, prompt_id))
    index.removed("a1")
    index.removed("unknown")
    assert [i[1] for i in index.pending("a")] == ["a2"]
    index.started(item(2, "b1"), run_id=7)
    index.wiped()
    assert index.pending("a") == index.pending("b") == [] and index.remaining("a") == 0
    assert [i[1] for i in index.running("b")] == ["b1"]
    index.finished(7)
    index.finished(7)  # once is enough
    assert index.remaining("b") == 0

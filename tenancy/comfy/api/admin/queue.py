"""/tenancy/admin/queue: the live queue of every tenant, and cancelling any prompt in it. `live_queue` is also
what a tenant's /tenancy/queue filters to its own prompts."""

from __future__ import annotations

import sys

from aiohttp import web

from ....read_back import owner_in
from ....refusal import Refusal
from ...services import GuardServices
from ...surfaces.queue import fresh_queue
from .request import AdminHandlers, operator


class QueueApi(AdminHandlers):
    async def queue(self, request: web.Request) -> web.Response:
        operator(request)
        running, pending = live_queue(self.services)
        return web.json_response({"running": running, "pending": pending})

    async def cancel(self, request: web.Request) -> web.Response:
        """Any prompt: a queued one leaves the queue and its hold is refunded; a running one is interrupted
        (its hold is then settled as `interrupted` by the execution events)."""
        principal = operator(request)
        prompt_id = request.match_info["prompt_id"]
        queue = self.services.server.prompt_queue
        await fresh_queue(self.services)  # with the cluster queue: a prompt just queued on any instance is found
        running, pending = queue.get_current_queue_volatile()
        owner = next((owner_in(item[3]) for item in running + pending if item[1] == prompt_id), None)
        if any(item[1] == prompt_id for item in pending) and queue.delete_queue_item(lambda it: it[1] == prompt_id):
            await self.services.accounting.released(prompt_id, "cancelled")
            state = "pending"
        elif any(item[1] == prompt_id for item in running):
            self.services.outcomes.remember(prompt_id, "cancelled")
            if hasattr(queue, "interrupt_if_running"):
                queue.interrupt_if_running(prompt_id)
            else:
                sys.modules["nodes"].interrupt_processing()
            state = "running"
        elif self.services.relay is not None and await self.services.relay.interrupt(prompt_id):
            owner = await self.services.owners.of_prompt(prompt_id)  # running on another instance of the cluster
            state = "running"
        else:
            raise Refusal(404, "not_found", f"prompt {prompt_id} is neither queued nor running")
        self.record(request, principal, "prompt_cancel", tenant=owner, prompt_id=prompt_id, state=state)
        return web.json_response({"prompt_id": prompt_id, "tenant": owner, "state": state, "cancelled": True})


def live_queue(services: GuardServices, running: list | None = None) -> tuple[list[dict], list[dict]]:
    """(running, pending) rows of ComfyUI's queue, pending in the order it will run them, with each prompt's owner
    and when it was admitted and started. `running`: the running items to list instead of this instance's (a
    tenant's own, on every instance of a cluster)."""
    here, pending = services.server.prompt_queue.get_current_queue_volatile()
    running = here if running is None else running
    prompts = services.accounting.prompts
    rows = ([], [])
    for state, items, out in (("running", running, rows[0]), ("pending", sorted(pending, key=_order), rows[1])):
        for position, item in enumerate(items, start=1):
            number, prompt_id, prompt, extra = item[0], item[1], item[2], item[3]
            info = prompts.get(prompt_id)
            classes = sorted({n.get("class_type", "?") for n in prompt.values() if isinstance(n, dict)}) \
                if isinstance(prompt, dict) else []
            out.append({"prompt_id": prompt_id, "state": state, "tenant": owner_in(extra),
                        "position": position if state == "pending" else 0, "number": number,
                        "nodes": len(prompt) if isinstance(prompt, dict) else 0, "classes": classes[:12],
                        "admitted": info.admitted if info else None,
                        "started": info.started if info else None})
    return rows


def _order(item) -> tuple:
    return (item[0], str(item[1]))  # ComfyUI's heap order: number, then prompt id

"""/tenancy/admin/cluster: the cluster queue as operators see it (instances, their liveness, drain and what each
runs; per tenant the queue depth, running prompts and oldest wait), and draining an instance: it takes no new
prompt, finishes what it runs, and may then be stopped at no cost. The same reads and writes as
`python -m tenancy cluster status|drain|undrain`."""

from __future__ import annotations

import asyncio
import dataclasses

from aiohttp import web

from ....refusal import Refusal
from .request import AdminHandlers, operator


class ClusterApi(AdminHandlers):
    def _queue(self):
        link = self.services.accounting.cluster
        if link is None:
            raise Refusal(409, "cluster_disabled", "this instance does not run the cluster queue (cluster.enabled)")
        return link.queue

    async def status(self, request: web.Request) -> web.Response:
        operator(request)
        if self.services.accounting.cluster is None:
            return web.json_response({"enabled": False})
        queue = self._queue()
        status = await asyncio.to_thread(queue.status)
        return web.json_response({"enabled": True, "this_instance": queue.instance, **dataclasses.asdict(status)})

    async def drain(self, request: web.Request) -> web.Response:
        principal = operator(request)
        name = request.match_info["instance"]
        mark = await asyncio.to_thread(self._queue().drain, name)
        self.record(request, principal, "cluster_drain", instance=name)
        return web.json_response({"instance": name, "draining": True, "since_ms": int(mark)})

    async def undrain(self, request: web.Request) -> web.Response:
        principal = operator(request)
        name = request.match_info["instance"]
        was = await asyncio.to_thread(self._queue().undrain, name)
        self.record(request, principal, "cluster_undrain", instance=name, was_drained=was)
        return web.json_response({"instance": name, "draining": False, "was_drained": was})

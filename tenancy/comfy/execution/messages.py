"""Every message ComfyUI sends about a prompt reaches its owner only, and feeds the accounting.

ComfyUI sends everything through `PromptServer.send`; the guard wraps it once at start-up. A message that names
no prompt reaches a tenant only when it is known to be safe: `status` (with the tenant's own queue),
`feature_flags` (as tenants get them), and messages ComfyUI addresses to the socket of the prompt it is running
(they are about that prompt). Everything else (asset scans, other packs' broadcasts) goes to operators only.
Log lines the prompt worker writes for a tenant's prompt are tagged with the tenant.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ...owners import Owners
from ...read_back import virtual_refs
from ...store import StoreUnavailable
from ...workflow import ADMIN_NAMESPACE
from ..surfaces.queue import queue_info, remaining_now, remaining_of
from ..surfaces.user_data import tenant_features

if TYPE_CHECKING:
    from ..services import GuardServices

log = logging.getLogger("tenancy")


def install_message_routing(services: GuardServices) -> None:
    server = services.server
    original = server.send

    async def send(event, data, sid=None):
        prompt_id = _prompt_of(server, data, sid)
        if prompt_id is None:
            return await _send_unowned(services, original, event, data, sid)
        owner = await _owner(services.owners, prompt_id)
        if isinstance(data, dict):
            try:
                services.accounting.on_event(event, data, owner)
            except Exception:  # ComfyUI's publish loop must never see the guard fail: it would stop the server
                log.exception("[tenancy] accounting of %s for prompt %s failed", event, prompt_id)
        if owner and event == "executed" and isinstance(data, dict):
            await services.uploads.share_shown(owner, data.get("output"))  # in a cluster: any instance serves
        namespace = (owner or ADMIN_NAMESPACE) + ":"
        targets = [sid] if sid is not None else [s for s in list(server.sockets) if s.startswith(namespace)]
        for target in targets:
            if not str(target).startswith(namespace):
                continue  # never to another tenant, whatever the message says
            payload = data
            if owner and event == "executed":
                payload = dict(data, output=virtual_refs(data["output"], owner))
            await original(event, payload, target)

    server.send = send


def _prompt_of(server, data, sid) -> str | None:
    """The prompt a message is about: the one it names; for previews and other binary messages, and for messages
    addressed to the socket that queued the running prompt, the running prompt."""
    if isinstance(data, dict):
        prompt_id = data.get("prompt_id")
        if prompt_id is None and sid is not None and sid == getattr(server, "client_id", None):
            prompt_id = getattr(server, "last_prompt_id", None)
        return prompt_id
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], dict) and data[1].get("prompt_id"):
        return data[1]["prompt_id"]  # a preview with its metadata
    return getattr(server, "last_prompt_id", None)


async def _send_unowned(services: GuardServices, original, event, data, sid) -> None:
    """A message about no prompt: as it is to operators; to tenants only what is known to be safe."""
    server = services.server
    targets = [sid] if sid is not None else list(server.sockets)
    admin = ADMIN_NAMESPACE + ":"
    remaining: dict[str, int] = {}
    for target in targets:
        if str(target).startswith(admin):
            await original(event, data, target)
            continue
        tenant = str(target).partition(":")[0]
        if event == "status" and isinstance(data, dict):
            if tenant not in remaining:  # once per tenant and message, whatever the number of its sockets
                remaining[tenant] = await remaining_now(services, tenant) if sid is not None \
                    else remaining_of(services, tenant)  # one socket's: its first
            await original(event, dict(data, status=queue_info(remaining[tenant])), target)
        elif event == "feature_flags" and isinstance(data, dict):
            await original(event, tenant_features(data), target)


async def _owner(owners: Owners, prompt_id: str) -> str | None:
    """The prompt's owner; None (its messages reach operators only) when the store cannot say now."""
    try:
        return await owners.of_prompt(prompt_id)
    except StoreUnavailable:
        return None


class TenantLogTag(logging.Filter):
    """Prefixes `[Tenant: <id>]` to records the prompt worker emits while it works on a tenant's prompt."""

    def __init__(self, owners: Owners, server) -> None:
        super().__init__()
        self.owners, self.server = owners, server

    def filter(self, record: logging.LogRecord) -> bool:
        tenant = self.owners.get(getattr(self.server, "last_prompt_id", None) or "")
        if tenant and "prompt_worker" in threading.current_thread().name and not getattr(record, "_tenant", False):
            record.msg = f"[Tenant: {tenant}] {record.msg}"
            record._tenant = True
        return True

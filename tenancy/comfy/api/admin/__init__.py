"""The operators' JSON API under /tenancy/admin/ (documented in docs/ADMIN_API.md) and the page that uses it, one
module per resource.

Operators reach everything. A tenant's `tenant_admin` reaches the members and API keys of its own tenant
(those routes are `tenant` in the route table and check the role here). Every change goes through the same
functions the CLI uses (`tenancy.accounts`) and lands in the audit log.
"""

from __future__ import annotations

from aiohttp import web

from ...services import GuardServices
from .audit import AuditApi
from .cluster import ClusterApi
from .page import PageApi
from .queue import QueueApi
from .tenants import TenantsApi
from .usage import UsageApi


def add_routes(routes: web.RouteTableDef, services: GuardServices) -> None:
    page, tenants, usage, queue, audit = (PageApi(services), TenantsApi(services), UsageApi(services),
                                          QueueApi(services), AuditApi(services))
    routes.get("/tenancy/admin")(page.page)
    routes.get("/tenancy/admin/admin.mjs")(page.script)
    routes.get("/tenancy/admin/dom.mjs")(page.dom)
    routes.get("/tenancy/admin/plans")(page.plans)
    routes.get("/tenancy/admin/tenants")(tenants.list_tenants)
    routes.post("/tenancy/admin/tenants")(tenants.create_tenant)
    routes.patch("/tenancy/admin/tenants/{tenant_id}")(tenants.update_tenant)
    routes.get("/tenancy/admin/tenants/{tenant_id}/members")(tenants.list_members)
    routes.post("/tenancy/admin/tenants/{tenant_id}/members")(tenants.create_member)
    routes.patch("/tenancy/admin/tenants/{tenant_id}/members/{username}")(tenants.update_member)
    routes.get("/tenancy/admin/tenants/{tenant_id}/keys")(tenants.list_tenant_keys)
    routes.post("/tenancy/admin/tenants/{tenant_id}/keys")(tenants.create_key)
    routes.get("/tenancy/admin/keys")(tenants.list_keys)
    routes.delete("/tenancy/admin/keys/{key_id}")(tenants.revoke_key)
    routes.get("/tenancy/admin/usage")(usage.usage)
    routes.get("/tenancy/admin/ledger")(usage.ledger)
    routes.get("/tenancy/admin/queue")(queue.queue)
    routes.post("/tenancy/admin/queue/{prompt_id}/cancel")(queue.cancel)
    routes.get("/tenancy/admin/audit")(audit.audit)
    cluster = ClusterApi(services)
    routes.get("/tenancy/admin/cluster")(cluster.status)
    routes.post("/tenancy/admin/cluster/instances/{instance}/drain")(cluster.drain)
    routes.post("/tenancy/admin/cluster/instances/{instance}/undrain")(cluster.undrain)

"""What every admin handler does with its request: check who may, read the JSON body, turn the accounts
operations' refusals into answers, and write the audit line that names the affected tenant."""

from __future__ import annotations

from aiohttp import web

from ....accounts import AdminError
from ....records import Principal, Tenant
from ....refusal import Refusal
from ... import http
from ...http import AUDITED, PRINCIPAL_KEY
from ...services import GuardServices


class AdminHandlers:
    """The base of each resource's handlers: the services they work with (store, settings, audit log)."""

    def __init__(self, services: GuardServices) -> None:
        self.services = services

    async def tenant_or_404(self, tenant_id: str) -> Tenant:
        tenant = await self.services.store.get_tenant(tenant_id)
        if tenant is None:
            raise Refusal(404, "not_found", f"no tenant {tenant_id}")
        return tenant

    def record(self, request: web.Request, principal: Principal, action: str, **details) -> None:
        """The request's audit line, in place of the guard's generic one (it names the affected tenant)."""
        request[AUDITED] = True
        self.services.audit.record(principal=principal.credential or principal.subject, ip=request.remote,
                                route=f"{request.method} {request.path}", decision="admin", action=action,
                                by_tenant=principal.tenant, **details)


# -- who may ------------------------------------------------------------------------------------------------

def operator(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL_KEY]
    if not principal.is_admin:
        raise Refusal(403, "admin_only", "this is for operators")
    return principal


def manager_of(request: web.Request, tenant_id: str) -> Principal:
    """Operators, and the tenant's own tenant_admins."""
    principal: Principal = request[PRINCIPAL_KEY]
    if principal.is_admin or (principal.role == "tenant_admin" and principal.tenant == tenant_id):
        return principal
    raise Refusal(403, "admin_only", "only operators and this tenant's tenant_admins may do this")


def managed_tenant(request: web.Request) -> tuple[str, Principal]:
    """The tenant the route names, and the caller, who manages it."""
    tenant_id = request.match_info["tenant_id"]
    return tenant_id, manager_of(request, tenant_id)


# -- request parsing ----------------------------------------------------------------------------------------

async def json_object(request: web.Request) -> dict:
    body = await http.json_body(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise Refusal(400, "invalid_request", "expected a JSON object")
    return body


def text(body: dict, name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value:
        raise Refusal(400, "invalid_request", f"`{name}` must be a non-empty string")
    return value


def whole_number(query_value: str | None, default: int, lo: int, hi: int) -> int:
    """A query parameter's count, clamped to [lo, hi]."""
    if query_value is None or query_value == "":
        return default
    try:
        return max(lo, min(hi, int(query_value)))
    except ValueError:
        raise Refusal(400, "invalid_request", f"{query_value!r} is not a whole number") from None


def invalid(call, *args):
    """`call(*args)`, whose ValueError in words (a malformed day, a short password) is the caller's 400."""
    try:
        return call(*args)
    except ValueError as exc:
        raise AdminError(str(exc)).to_refusal() from None


async def admin_call(coroutine):
    """An accounts operation, whose AdminError or ValueError (a malformed id or name) is the caller's 400."""
    try:
        return await coroutine
    except ValueError as exc:
        raise AdminError(str(exc)).to_refusal() from None

"""/tenancy/admin/tenants, their members and API keys: operators manage tenants; a tenant's tenant_admins manage
its members and keys too."""

from __future__ import annotations

import dataclasses
import re
import time

from aiohttp import web

from .... import accounts, identity
from ....records import TENANT_ROLES, Account, ApiKey, Tenant
from ....refusal import Refusal
from .request import AdminHandlers, admin_call, invalid, json_object, managed_tenant, manager_of, operator, text

TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
STATUSES = ("active", "disabled")


class TenantsApi(AdminHandlers):
    # -- tenants -------------------------------------------------------------------------------------------
    async def list_tenants(self, request: web.Request) -> web.Response:
        operator(request)
        store = self.services.store
        keys = await store.list_keys()
        members = await store.list_accounts()
        now = time.time()
        tenants = []
        for tenant in await store.list_tenants():
            tenants.append({**_tenant_json(tenant),
                            "members": sum(1 for a in members if a.tenant == tenant.id),
                            "active_keys": sum(1 for k in keys if k.tenant == tenant.id and k.state(now) == "active")})
        return web.json_response({"tenants": tenants})

    async def create_tenant(self, request: web.Request) -> web.Response:
        principal = operator(request)
        body = await json_object(request)
        tenant_id, plan = text(body, "id"), text(body, "plan", "basic")
        tags = _tags(body.get("tags", []))
        if await self.services.store.get_tenant(tenant_id) is not None:
            raise Refusal(409, "exists", f"tenant {tenant_id} exists")
        store, plans = self.services.store, self.services.settings.plans
        tenant = await admin_call(accounts.add_tenant(store, tenant_id, plan, plans, tags))
        self.record(request, principal, "tenant_create", tenant=tenant.id, plan=plan)
        return web.json_response(_tenant_json(tenant), status=201)

    async def update_tenant(self, request: web.Request) -> web.Response:
        principal = operator(request)
        tenant_id = request.match_info["tenant_id"]
        body = await json_object(request)
        changes: dict = {}
        if "plan" in body:
            changes["plan"] = text(body, "plan")
        if "status" in body:
            if body["status"] not in STATUSES:
                raise Refusal(400, "invalid_request", f"`status` must be one of {', '.join(STATUSES)}")
            changes["status"] = body["status"]
        if "tags" in body:
            changes["tags"] = _tags(body["tags"])
        if not changes:
            raise Refusal(400, "invalid_request", "send at least one of `plan`, `status`, `tags`")
        await self.tenant_or_404(tenant_id)
        tenant = await admin_call(accounts.update_tenant(self.services.store, tenant_id, self.services.settings.plans,
                                                         **changes))
        self.record(request, principal, "tenant_update", tenant=tenant_id,
                    changes={k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
        return web.json_response(_tenant_json(tenant))

    # -- members -------------------------------------------------------------------------------------------
    async def list_members(self, request: web.Request) -> web.Response:
        tenant_id, _ = managed_tenant(request)
        await self.tenant_or_404(tenant_id)
        members = [_member_json(a) for a in await self.services.store.list_accounts(tenant_id) if a.tenant == tenant_id]
        return web.json_response({"tenant": tenant_id, "members": members})

    async def create_member(self, request: web.Request) -> web.Response:
        tenant_id, principal = managed_tenant(request)
        body = await json_object(request)
        username, role = text(body, "username"), text(body, "role", "member")
        password = body.get("password")
        generated = password is None or password == ""
        if generated:
            password = accounts.new_password()
        if not isinstance(password, str):
            raise Refusal(400, "invalid_request", "`password` must be a string")
        _check_role(role)
        await self.tenant_or_404(tenant_id)
        if await self.services.store.get_account(username) is not None:
            raise Refusal(409, "exists", f"username {username} is taken")
        account = await admin_call(accounts.add_account(self.services.store, username, password, tenant_id, role))
        self.record(request, principal, "member_create", tenant=tenant_id, username=username, role=role)
        answer = _member_json(account)
        if generated:
            answer["password"] = password  # shown once; only its argon2id hash is stored
        return web.json_response(answer, status=201)

    async def update_member(self, request: web.Request) -> web.Response:
        tenant_id, principal = managed_tenant(request)
        username = request.match_info["username"]
        body = await json_object(request)
        account = await self.services.store.get_account(username)
        if account is None or account.tenant != tenant_id:
            raise Refusal(404, "not_found", f"no member {username} in tenant {tenant_id}")
        changes: dict = {}
        if "disabled" in body:
            if not isinstance(body["disabled"], bool):
                raise Refusal(400, "invalid_request", "`disabled` must be true or false")
            changes["disabled"] = body["disabled"]
        if "role" in body:
            changes["role"] = _check_role(body["role"])
        if "password" in body:
            changes["password_hash"] = invalid(identity.hash_password, text(body, "password"))
        if not changes:
            raise Refusal(400, "invalid_request", "send at least one of `disabled`, `role`, `password`")
        account = dataclasses.replace(account, **changes)
        await self.services.store.put_account(account, create=False)
        self.record(request, principal, "member_update", tenant=tenant_id, username=username,
                    changes=sorted("password" if k == "password_hash" else k for k in changes))
        return web.json_response(_member_json(account))

    # -- API keys ------------------------------------------------------------------------------------------
    async def list_keys(self, request: web.Request) -> web.Response:
        operator(request)
        tenant = request.rel_url.query.get("tenant") or None
        return web.json_response({"keys": [_key_json(k) for k in await self.services.store.list_keys(tenant)]})

    async def list_tenant_keys(self, request: web.Request) -> web.Response:
        tenant_id, _ = managed_tenant(request)
        keys = [_key_json(k) for k in await self.services.store.list_keys(tenant_id) if k.tenant == tenant_id]
        return web.json_response({"tenant": tenant_id, "keys": keys})

    async def create_key(self, request: web.Request) -> web.Response:
        tenant_id, principal = managed_tenant(request)
        body = await json_object(request)
        name = text(body, "name", "api")
        expires_in = body.get("expires_in_s")
        if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(expires_in, (int, float))
                                       or expires_in <= 0):
            raise Refusal(400, "invalid_request", "`expires_in_s` must be a positive number of seconds")
        await self.tenant_or_404(tenant_id)
        key, record = await admin_call(accounts.create_key(self.services.store, tenant_id, name, expires_in))
        self.record(request, principal, "key_create", tenant=tenant_id, key_id=record.key_id)
        return web.json_response({**_key_json(record), "key": key}, status=201)

    async def revoke_key(self, request: web.Request) -> web.Response:
        key_id = request.match_info["key_id"]
        record = await self.services.store.get_key(key_id)
        if record is None:
            raise Refusal(404, "not_found", f"no key {key_id}")
        principal = operator(request) if record.tenant is None else manager_of(request, record.tenant)
        await self.services.store.revoke_key(key_id)
        self.record(request, principal, "key_revoke", tenant=record.tenant, key_id=key_id)
        return web.json_response({**_key_json(dataclasses.replace(record, revoked=True))})


def _check_role(role) -> str:
    if role not in TENANT_ROLES:
        raise Refusal(400, "invalid_request", f"`role` must be {' or '.join(TENANT_ROLES)}")
    return role


def _tags(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, list) or not all(isinstance(t, str) and TAG.match(t) for t in value):
        raise Refusal(400, "invalid_request", "`tags` must be a list of short names (letters, digits, _ . : -)")
    return tuple(dict.fromkeys(value))


def _tenant_json(tenant: Tenant) -> dict:
    return {"id": tenant.id, "plan": tenant.plan, "status": tenant.status, "tags": list(tenant.tags)}


def _member_json(account: Account) -> dict:
    return {"username": account.username, "tenant": account.tenant, "role": account.role,
            "disabled": account.disabled}


def _key_json(key: ApiKey) -> dict:
    return {"key_id": key.key_id, "tenant": key.tenant, "role": key.role, "name": key.name, "created": key.created,
            "expires": key.expires, "revoked": key.revoked, "state": key.state(time.time())}

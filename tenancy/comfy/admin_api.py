"""The operators' JSON API under /tenancy/admin/ (documented in docs/ADMIN_API.md) and the page that uses it.

Operators reach everything. A tenant's `tenant_admin` reaches the members and API keys of its own tenant
(those routes are `tenant` in the route table and check the role here). Every change goes through the same
functions the CLI uses (`tenancy.accounts`) and lands in the audit log.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import io
import json
import re
import sys
import time
from pathlib import Path

from aiohttp import web

from .. import accounts, identity
from ..admission import quota_day
from ..records import ApiKey, Principal, Tenant
from ..refusal import Refusal
from . import http
from .guard import AUDITED, PRINCIPAL_KEY, Guard
from .queue_surfaces import owner_in

WEB = Path(__file__).resolve().parents[2] / "web"
ADMIN_PAGE = WEB / "admin.html"
ADMIN_SCRIPT = WEB / "admin.mjs"  # not `.js`: ComfyUI would load every .js of web/ into the editor
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
STATUSES = ("active", "disabled")
AUDIT_LIMIT_MAX = 5000
AUDIT_SCAN_MAX = 500_000  # lines read at most per audit query (newest first)
LEDGER_LIMIT_DEFAULT = 500


def add_routes(routes: web.RouteTableDef, guard: Guard) -> None:
    api = AdminApi(guard)
    routes.get("/tenancy/admin")(api.page)
    routes.get("/tenancy/admin/admin.mjs")(api.script)
    routes.get("/tenancy/admin/plans")(api.plans)
    routes.get("/tenancy/admin/tenants")(api.list_tenants)
    routes.post("/tenancy/admin/tenants")(api.create_tenant)
    routes.patch("/tenancy/admin/tenants/{tenant_id}")(api.update_tenant)
    routes.get("/tenancy/admin/tenants/{tenant_id}/members")(api.list_members)
    routes.post("/tenancy/admin/tenants/{tenant_id}/members")(api.create_member)
    routes.patch("/tenancy/admin/tenants/{tenant_id}/members/{username}")(api.update_member)
    routes.get("/tenancy/admin/tenants/{tenant_id}/keys")(api.list_tenant_keys)
    routes.post("/tenancy/admin/tenants/{tenant_id}/keys")(api.create_key)
    routes.get("/tenancy/admin/keys")(api.list_keys)
    routes.delete("/tenancy/admin/keys/{key_id}")(api.revoke_key)
    routes.get("/tenancy/admin/usage")(api.usage)
    routes.get("/tenancy/admin/ledger")(api.ledger)
    routes.get("/tenancy/admin/queue")(api.queue)
    routes.post("/tenancy/admin/queue/{prompt_id}/cancel")(api.cancel)
    routes.get("/tenancy/admin/audit")(api.audit)
    routes.get("/tenancy/queue")(api.own_queue)


class AdminApi:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    # -- the page ------------------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        _operator(request)
        return web.FileResponse(ADMIN_PAGE, headers={"Cache-Control": "no-store"})

    async def script(self, request: web.Request) -> web.StreamResponse:
        _operator(request)
        return web.FileResponse(ADMIN_SCRIPT, headers={"Cache-Control": "no-store",
                                                       "Content-Type": "text/javascript; charset=utf-8"})

    async def plans(self, request: web.Request) -> web.Response:
        _operator(request)
        return web.json_response({"plans": {name: dataclasses.asdict(plan)
                                            for name, plan in self.guard.settings.plans.items()}})

    # -- tenants -------------------------------------------------------------------------------------------
    async def list_tenants(self, request: web.Request) -> web.Response:
        _operator(request)
        store = self.guard.store
        keys = await store.list_keys()
        members = await store.list_accounts()
        tenants = []
        for tenant in await store.list_tenants():
            tenants.append({**_tenant_json(tenant),
                            "members": sum(1 for a in members if a.tenant == tenant.id),
                            "active_keys": sum(1 for k in keys if k.tenant == tenant.id and _key_state(k) == "active")})
        return web.json_response({"tenants": tenants})

    async def create_tenant(self, request: web.Request) -> web.Response:
        principal = _operator(request)
        body = await _object(request)
        tenant_id, plan = _text(body, "id"), _text(body, "plan", "basic")
        tags = _tags(body.get("tags", []))
        if await self.guard.store.get_tenant(tenant_id) is not None:
            raise Refusal(409, "exists", f"tenant {tenant_id} exists")
        tenant = await _admin_call(accounts.add_tenant(self.guard.store, tenant_id, plan, self.guard.settings.plans,
                                                       tags))
        self._audit(request, principal, "tenant_create", tenant=tenant.id, plan=plan)
        return web.json_response(_tenant_json(tenant), status=201)

    async def update_tenant(self, request: web.Request) -> web.Response:
        principal = _operator(request)
        tenant_id = request.match_info["tenant_id"]
        body = await _object(request)
        changes: dict = {}
        if "plan" in body:
            changes["plan"] = _text(body, "plan")
        if "status" in body:
            if body["status"] not in STATUSES:
                raise Refusal(400, "invalid_request", f"`status` must be one of {', '.join(STATUSES)}")
            changes["status"] = body["status"]
        if "tags" in body:
            changes["tags"] = _tags(body["tags"])
        if not changes:
            raise Refusal(400, "invalid_request", "send at least one of `plan`, `status`, `tags`")
        await self._tenant_or_404(tenant_id)
        tenant = await _admin_call(accounts.update_tenant(self.guard.store, tenant_id, self.guard.settings.plans,
                                                          **changes))
        self._audit(request, principal, "tenant_update", tenant=tenant_id,
                    changes={k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
        return web.json_response(_tenant_json(tenant))

    # -- members -------------------------------------------------------------------------------------------
    async def list_members(self, request: web.Request) -> web.Response:
        tenant_id = request.match_info["tenant_id"]
        _manager_of(request, tenant_id)
        await self._tenant_or_404(tenant_id)
        members = [_member_json(a) for a in await self.guard.store.list_accounts(tenant_id) if a.tenant == tenant_id]
        return web.json_response({"tenant": tenant_id, "members": members})

    async def create_member(self, request: web.Request) -> web.Response:
        tenant_id = request.match_info["tenant_id"]
        principal = _manager_of(request, tenant_id)
        body = await _object(request)
        username, role = _text(body, "username"), _text(body, "role", "member")
        password = body.get("password")
        generated = password is None or password == ""
        if generated:
            password = accounts.new_password()
        if not isinstance(password, str):
            raise Refusal(400, "invalid_request", "`password` must be a string")
        if role not in ("member", "tenant_admin"):
            raise Refusal(400, "invalid_request", "`role` must be member or tenant_admin")
        await self._tenant_or_404(tenant_id)
        if await self.guard.store.get_account(username) is not None:
            raise Refusal(409, "exists", f"username {username} is taken")
        account = await _admin_call(accounts.add_account(self.guard.store, username, password, tenant_id, role))
        self._audit(request, principal, "member_create", tenant=tenant_id, username=username, role=role)
        answer = _member_json(account)
        if generated:
            answer["password"] = password  # shown once; only its argon2id hash is stored
        return web.json_response(answer, status=201)

    async def update_member(self, request: web.Request) -> web.Response:
        tenant_id, username = request.match_info["tenant_id"], request.match_info["username"]
        principal = _manager_of(request, tenant_id)
        body = await _object(request)
        account = await self.guard.store.get_account(username)
        if account is None or account.tenant != tenant_id:
            raise Refusal(404, "not_found", f"no member {username} in tenant {tenant_id}")
        changes: dict = {}
        if "disabled" in body:
            if not isinstance(body["disabled"], bool):
                raise Refusal(400, "invalid_request", "`disabled` must be true or false")
            changes["disabled"] = body["disabled"]
        if "role" in body:
            if body["role"] not in ("member", "tenant_admin"):
                raise Refusal(400, "invalid_request", "`role` must be member or tenant_admin")
            changes["role"] = body["role"]
        if "password" in body:
            try:
                changes["password_hash"] = identity.hash_password(_text(body, "password"))
            except ValueError as exc:
                raise Refusal(400, "invalid_request", str(exc)) from None
        if not changes:
            raise Refusal(400, "invalid_request", "send at least one of `disabled`, `role`, `password`")
        account = dataclasses.replace(account, **changes)
        await self.guard.store.put_account(account, create=False)
        self._audit(request, principal, "member_update", tenant=tenant_id, username=username,
                    changes=sorted("password" if k == "password_hash" else k for k in changes))
        return web.json_response(_member_json(account))

    # -- API keys ------------------------------------------------------------------------------------------
    async def list_keys(self, request: web.Request) -> web.Response:
        _operator(request)
        tenant = request.rel_url.query.get("tenant") or None
        return web.json_response({"keys": [_key_json(k) for k in await self.guard.store.list_keys(tenant)]})

    async def list_tenant_keys(self, request: web.Request) -> web.Response:
        tenant_id = request.match_info["tenant_id"]
        _manager_of(request, tenant_id)
        keys = [_key_json(k) for k in await self.guard.store.list_keys(tenant_id) if k.tenant == tenant_id]
        return web.json_response({"tenant": tenant_id, "keys": keys})

    async def create_key(self, request: web.Request) -> web.Response:
        tenant_id = request.match_info["tenant_id"]
        principal = _manager_of(request, tenant_id)
        body = await _object(request)
        name = _text(body, "name", "api")
        expires_in = body.get("expires_in_s")
        if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(expires_in, (int, float))
                                       or expires_in <= 0):
            raise Refusal(400, "invalid_request", "`expires_in_s` must be a positive number of seconds")
        await self._tenant_or_404(tenant_id)
        key, record = await _admin_call(accounts.create_key(self.guard.store, tenant_id, name, expires_in))
        self._audit(request, principal, "key_create", tenant=tenant_id, key_id=record.key_id)
        return web.json_response({**_key_json(record), "key": key}, status=201)

    async def revoke_key(self, request: web.Request) -> web.Response:
        key_id = request.match_info["key_id"]
        record = await self.guard.store.get_key(key_id)
        if record is None:
            raise Refusal(404, "not_found", f"no key {key_id}")
        principal = _operator(request) if record.tenant is None else _manager_of(request, record.tenant)
        await self.guard.store.revoke_key(key_id)
        self._audit(request, principal, "key_revoke", tenant=record.tenant, key_id=key_id)
        return web.json_response({**_key_json(dataclasses.replace(record, revoked=True))})

    # -- usage and the ledger ------------------------------------------------------------------------------
    async def usage(self, request: web.Request) -> web.Response:
        _operator(request)
        day = request.rel_url.query.get("day") or None
        if day is not None:
            _day_start(day)
        now = time.time()
        rows = []
        for tenant in await self.guard.store.list_tenants():
            plan = self.guard.settings.plans.get(tenant.plan)
            today = day or quota_day(now, plan.timezone if plan else "UTC")
            current = await self.guard.store.usage(tenant.id, today)
            limit = plan.daily_seconds if plan else None
            remaining = None if limit is None else -1 if limit < 0 else max(0.0, limit - current.used - current.held)
            rows.append({"tenant": tenant.id, "plan": tenant.plan, "status": tenant.status, "day": today,
                         "used_seconds": current.used, "held_seconds": current.held, "daily_seconds": limit,
                         "remaining_seconds": remaining, "active_prompts": current.active})
        return web.json_response({"usage": rows})

    async def ledger(self, request: web.Request) -> web.StreamResponse:
        _operator(request)
        query = request.rel_url.query
        since = _day_start(query["since"]) if query.get("since") else None
        until = _day_start(query["until"]) + 86400 if query.get("until") else None
        entries = await self.guard.store.ledger(query.get("tenant") or None, since)
        if until is not None:
            entries = [e for e in entries if e.time < until]
        if query.get("format") == "csv":
            return _ledger_csv(entries)
        limit = _int(query.get("limit"), LEDGER_LIMIT_DEFAULT, 1, 100_000)
        newest = list(reversed(entries))[:limit]
        return web.json_response({"entries": [dataclasses.asdict(e) for e in newest],
                                  "total": len(entries), "truncated": len(entries) > limit})

    # -- the live queue ------------------------------------------------------------------------------------
    async def queue(self, request: web.Request) -> web.Response:
        _operator(request)
        running, pending = self._queue()
        return web.json_response({"running": running, "pending": pending})

    async def own_queue(self, request: web.Request) -> web.Response:
        """A tenant's own queued and running prompts, with their place in the whole queue."""
        principal: Principal = request[PRINCIPAL_KEY]
        running, pending = self._queue()

        def mine(item: dict) -> bool:
            return principal.is_admin or item["tenant"] == principal.tenant

        keep = ("prompt_id", "state", "position", "number", "admitted", "started")
        return web.json_response({
            "running": [{k: i.get(k) for k in keep} for i in running if mine(i)],
            "pending": [{k: i.get(k) for k in keep} for i in pending if mine(i)],
            "queue_length": len(pending), "running_count": len(running)})

    def _queue(self) -> tuple[list[dict], list[dict]]:
        running, pending = self.guard.server.prompt_queue.get_current_queue_volatile()
        prompts = self.guard.accounting.prompts
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

    async def cancel(self, request: web.Request) -> web.Response:
        """Any prompt: a queued one leaves the queue and its hold is refunded; a running one is interrupted
        (its hold is then settled as `interrupted` by the execution events)."""
        principal = _operator(request)
        prompt_id = request.match_info["prompt_id"]
        queue = self.guard.server.prompt_queue
        running, pending = queue.get_current_queue_volatile()
        owner = next((owner_in(item[3]) for item in running + pending if item[1] == prompt_id), None)
        if any(item[1] == prompt_id for item in pending) and queue.delete_queue_item(lambda it: it[1] == prompt_id):
            await self.guard.accounting.released(prompt_id, "cancelled")
            state = "pending"
        elif any(item[1] == prompt_id for item in running):
            self.guard.outcomes.remember(prompt_id, "cancelled")
            if hasattr(queue, "interrupt_if_running"):
                queue.interrupt_if_running(prompt_id)
            else:
                sys.modules["nodes"].interrupt_processing()
            state = "running"
        else:
            raise Refusal(404, "not_found", f"prompt {prompt_id} is neither queued nor running")
        self._audit(request, principal, "prompt_cancel", tenant=owner, prompt_id=prompt_id, state=state)
        return web.json_response({"prompt_id": prompt_id, "tenant": owner, "state": state, "cancelled": True})

    # -- the audit log -------------------------------------------------------------------------------------
    async def audit(self, request: web.Request) -> web.Response:
        _operator(request)
        query = request.rel_url.query
        limit = _int(query.get("limit"), 200, 1, AUDIT_LIMIT_MAX)
        since = _since(query.get("since"))
        filters = {name: query[name] for name in ("tenant", "decision", "reason", "prompt_id", "principal", "ip",
                                                  "action") if query.get(name)}
        route = query.get("route") or ""
        entries, scanned = await asyncio.to_thread(self._flushed_audit, filters, route, since, limit)
        return web.json_response({"entries": entries, "scanned": scanned, "limit": limit})

    def _flushed_audit(self, filters: dict, route: str, since: float | None, limit: int):
        """What this instance recorded until now is on disk before the file is read (its writer is a fraction of
        a second behind)."""
        self.guard.audit.flush()
        return read_audit(self.guard.audit.path, filters, route, since, limit)

    # -- helpers -------------------------------------------------------------------------------------------
    async def _tenant_or_404(self, tenant_id: str) -> Tenant:
        tenant = await self.guard.store.get_tenant(tenant_id)
        if tenant is None:
            raise Refusal(404, "not_found", f"no tenant {tenant_id}")
        return tenant

    def _audit(self, request: web.Request, principal: Principal, action: str, **details) -> None:
        """The request's audit line, in place of the guard's generic one (it names the affected tenant)."""
        request[AUDITED] = True
        self.guard.audit.record(principal=principal.credential or principal.subject, ip=request.remote,
                                route=f"{request.method} {request.path}", decision="admin", action=action,
                                by_tenant=principal.tenant, **details)


# -- who may ------------------------------------------------------------------------------------------------

def _operator(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL_KEY]
    if not principal.is_admin:
        raise Refusal(403, "admin_only", "this is for operators")
    return principal


def _manager_of(request: web.Request, tenant_id: str) -> Principal:
    """Operators, and the tenant's own tenant_admins."""
    principal: Principal = request[PRINCIPAL_KEY]
    if principal.is_admin or (principal.role == "tenant_admin" and principal.tenant == tenant_id):
        return principal
    raise Refusal(403, "admin_only", "only operators and this tenant's tenant_admins may do this")


# -- request parsing ----------------------------------------------------------------------------------------

async def _object(request: web.Request) -> dict:
    body = await http.json_body(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise Refusal(400, "invalid_request", "expected a JSON object")
    return body


def _text(body: dict, name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value:
        raise Refusal(400, "invalid_request", f"`{name}` must be a non-empty string")
    return value


def _tags(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, list) or not all(isinstance(t, str) and TAG.match(t) for t in value):
        raise Refusal(400, "invalid_request", "`tags` must be a list of short names (letters, digits, _ . : -)")
    return tuple(dict.fromkeys(value))


def _int(text: str | None, default: int, lo: int, hi: int) -> int:
    if text is None or text == "":
        return default
    try:
        return max(lo, min(hi, int(text)))
    except ValueError:
        raise Refusal(400, "invalid_request", f"{text!r} is not a whole number") from None


def _day_start(day: str) -> float:
    try:
        return dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        raise Refusal(400, "invalid_request", f"{day!r}: use YYYY-MM-DD") from None


def _since(text: str | None) -> float | None:
    """An epoch number, an ISO date or time (UTC unless it says otherwise), or nothing."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Refusal(400, "invalid_request", f"`since` {text!r}: use epoch seconds or an ISO date/time") from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)).timestamp()


async def _admin_call(coroutine):
    try:
        return await coroutine
    except accounts.AdminError as exc:
        raise Refusal(400, "invalid_request", str(exc)) from None
    except ValueError as exc:  # invalid ids, names, short passwords
        raise Refusal(400, "invalid_request", str(exc)) from None


# -- answers --------------------------------------------------------------------------------------------------

def _tenant_json(tenant: Tenant) -> dict:
    return {"id": tenant.id, "plan": tenant.plan, "status": tenant.status, "tags": list(tenant.tags)}


def _member_json(account) -> dict:
    return {"username": account.username, "tenant": account.tenant, "role": account.role,
            "disabled": account.disabled}


def _key_state(key: ApiKey, now: float | None = None) -> str:
    if key.revoked:
        return "revoked"
    if key.expires is not None and key.expires < (time.time() if now is None else now):
        return "expired"
    return "active"


def _key_json(key: ApiKey) -> dict:
    return {"key_id": key.key_id, "tenant": key.tenant, "role": key.role, "name": key.name, "created": key.created,
            "expires": key.expires, "revoked": key.revoked, "state": _key_state(key)}


def _order(item) -> tuple:
    return (item[0], str(item[1]))  # ComfyUI's heap order: number, then prompt id


def _ledger_csv(entries) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time_utc", "tenant", "prompt_id", "kind", "seconds", "day", "outcome"])
    for e in entries:
        stamp = dt.datetime.fromtimestamp(e.time, dt.timezone.utc).isoformat(timespec="seconds")
        writer.writerow([stamp, e.tenant, e.prompt_id, e.kind, f"{e.seconds:.3f}", e.day, e.outcome])
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="tenancy-ledger.csv"'})


# -- reading the audit log newest first -------------------------------------------------------------------------

def read_audit(path: Path, filters: dict, route: str, since: float | None, limit: int) -> tuple[list[dict], int]:
    """Entries matching every filter (exact values; `route` as a substring), newest first, from the live
    file and then its rotated backups (`audit.log.1`, `.2`, …)."""
    found, scanned = [], 0
    for file in _audit_files(path):
        for line in _lines_backwards(file):
            scanned += 1
            if scanned > AUDIT_SCAN_MAX:
                return found, scanned - 1
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            if since is not None and isinstance(entry.get("time"), (int, float)) and entry["time"] < since:
                return found, scanned  # older still from here on
            if route and route not in str(entry.get("route", "")):
                continue
            if any(str(entry.get(k, "")) != v for k, v in filters.items()):
                continue
            found.append(entry)
            if len(found) >= limit:
                return found, scanned
    return found, scanned


def _audit_files(path: Path) -> list[Path]:
    files = [path] if path.exists() else []
    index = 1
    while (rotated := path.with_name(f"{path.name}.{index}")).exists():
        files.append(rotated)
        index += 1
    return files


def _lines_backwards(path: Path, chunk: int = 1 << 16):
    with path.open("rb") as handle:
        handle.seek(0, 2)
        position = handle.tell()
        rest = b""
        while position > 0:
            step = min(chunk, position)
            position -= step
            handle.seek(position)
            block = handle.read(step) + rest
            lines = block.split(b"\n")
            rest = lines.pop(0)
            for line in reversed(lines):
                if line.strip():
                    yield line.decode("utf-8", errors="replace")
        if rest.strip():
            yield rest.decode("utf-8", errors="replace")

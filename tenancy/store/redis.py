"""The shared store: Redis (redis-py asyncio), so several ComfyUI instances share identity, ownership and quotas.

Every admission decision (reserve, settle, GCRA rate limit) and the refresh-token rotation is one Lua script
(`redis_scripts`); time comes from Redis `TIME` unless the caller passes `now`, so all instances share a clock.
Where each record lives is `redis_layout`'s docstring.

Redis Cluster: a script can only touch keys of one slot, so the global index `tn:admission` is not written by
the scripts: the first `reserve` of a tenant on a connection adds the tenant in the same round trip, in a
pipeline command sent *before* its script (a new connection, perhaps to a restarted or failed-over server,
adds it again). A crash between them can leave a tenant listed with nothing held (harmless), never a hold the
reaper cannot find (unless someone deletes `tn:admission` alone while the connection stays up). The reaper
(`expired_holds`, `instance_holds`) reads each listed tenant's `active` zset; identity keys share the `{id}`
slot (small, rarely written). Idempotency is per tenant and prompt id (the reservation lives
in the tenant's slot). One exception: admitting checks and sets the prompt id's claim `tn:prompt:<id>` in the
same script as the hold (and abandoning releases it there), so that a prompt id is claimed exactly when it is
admitted; on a Redis Cluster those scripts would need the claim in the tenant's slot or a claim step of its own.
The client here is a plain (non-cluster) redis-py client; the layout is what a cluster
client needs. As in the SQLite store (which prunes by the same KEPT_S), usage, the ledger and the output index
are kept indefinitely; decided reservations and prompt owners a week.

Persistence: run Redis with `appendonly yes` and `appendfsync everysec`. A crash of the Redis host can then
lose up to about one second of acknowledged writes (more during an AOF rewrite with no-appendfsync-on-rewrite):
a reserve lost that way frees its hold (the prompt may run uncharged), a lost settle leaves the hold held
until the reaper settles it at its deadline (as reaped, not with the actual seconds). A script's writes reach
the AOF as one MULTI/EXEC block, so the ledger stream loses exactly the entries whose counter updates were
lost, and ledger sums still equal usage.
Replication is asynchronous, so a failover can lose the same. Treat the ledger export as the billing record
and reconcile it against ComfyUI's history when a Redis host crashed.
A plain `kill` or restart of redis-server loses nothing (the AOF is flushed on shutdown).

Decisions travel on one connection per store, spoken directly (`redis_lane.Lane`: concurrent callers pipeline,
one watchdog bounds every round trip). Everything else uses redis-py's pool, each call bounded by `timeout`.
Connection errors and timeouts raise StoreUnavailable; the next call reconnects, so the store recovers by
itself when Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import asdict
from urllib.parse import urlparse

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..records import (
    Account,
    ApiKey,
    LedgerEntry,
    QuotaDecision,
    RateLimit,
    RefreshToken,
    Reservation,
    ReserveRequest,
    Tenant,
    Usage,
)
from . import redis_layout as layout
from .protocol import ABANDONED, KEPT_S, Conflict
from .redis_lane import Lane, failure
from .redis_layout import ADMISSION
from .redis_scripts import GCRA, RESERVE, SETTLE, START, USE_REFRESH, Scripts

try:
    from asyncio import timeout as _deadline
except ImportError:  # Python 3.10: redis-py depends on async-timeout there
    from async_timeout import timeout as _deadline

JTI_MIN_TTL_S = 60  # clock skew between an instance's token check and Redis expiry
LEDGER_PAGE = 1000
PACKED_RATE_CALLS = 4096  # rate-limit calls kept packed (per-IP keys are many: the cache starts over when full)


class _Calls:
    """Bounds a call by the store's timeout and turns connection failures into StoreUnavailable."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.deadline = _deadline(store.timeout)

    async def __aenter__(self) -> None:
        await self.deadline.__aenter__()

    async def __aexit__(self, kind, exc, tb) -> bool:
        try:
            await self.deadline.__aexit__(kind, exc, tb)
        except asyncio.TimeoutError as timed_out:
            exc = timed_out
        if exc is None:
            return False
        unavailable = failure(self.store.description, exc)
        if unavailable is exc:
            return False
        raise unavailable from exc


class RedisStore:
    def __init__(self, url: str, *, timeout: float = 2.0, kept_s: float = KEPT_S) -> None:
        parts = urlparse(url)
        self.description = f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}/" \
                           f"{parts.path.strip('/') or '0'}"
        self.timeout = timeout
        self.kept_s = max(math.ceil(kept_s), 1)  # see protocol.KEPT_S: an expiry in whole seconds
        # socket_timeout stays None: a deadline per call bounds reads and writes more cheaply than redis-py's
        # own (a task per write); one immediate retry replaces a connection the server closed.
        self.redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=None, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1), health_check_interval=0)
        self.lane = Lane(self.redis.connection_pool, self.description, timeout)
        self.scripts = Scripts(self.lane)
        self._rate_calls: dict[tuple, bytes] = {}

    def _calls(self) -> _Calls:
        return _Calls(self)

    def identity_version(self) -> None:
        """Asking Redis whether anything changed costs the round trip a lookup costs: nothing is cached."""
        return None

    async def ping(self) -> None:
        async with self._calls():
            await self.redis.ping()

    async def prune(self, now: float | None = None) -> None:
        """Nothing to do: every Redis key that can go stale carries its own expiry."""

    async def close(self) -> None:
        await self.lane.close()
        await self.redis.aclose()

    # tenants and accounts ------------------------------------------------------------------------
    async def _put_record(self, key: str, field: str, record: object, create: bool) -> None:
        data = json.dumps(asdict(record))
        async with self._calls():
            if create:
                if not await self.redis.hsetnx(key, field, data):
                    raise Conflict(f"{key} {field!r} exists")
            else:
                await self.redis.hset(key, field, data)

    async def _get_record(self, key: str, field: str) -> dict | None:
        async with self._calls():
            raw = await self.redis.hget(key, field)
        return None if raw is None else json.loads(raw)

    async def _all_records(self, key: str) -> list[dict]:
        async with self._calls():
            raw = await self.redis.hgetall(key)
        return [json.loads(value) for _, value in sorted(raw.items())]

    async def put_tenant(self, tenant: Tenant, *, create: bool) -> None:
        await self._put_record("tn:{id}:tenants", tenant.id, tenant, create)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        data = await self._get_record("tn:{id}:tenants", tenant_id)
        return None if data is None else layout.tenant(data)

    async def list_tenants(self) -> list[Tenant]:
        return [layout.tenant(data) for data in await self._all_records("tn:{id}:tenants")]

    async def put_account(self, account: Account, *, create: bool) -> None:
        await self._put_record("tn:{id}:accounts", account.username, account, create)

    async def get_account(self, username: str) -> Account | None:
        data = await self._get_record("tn:{id}:accounts", username)
        return None if data is None else Account(**data)

    async def list_accounts(self, tenant: str | None = None) -> list[Account]:
        accounts = [Account(**data) for data in await self._all_records("tn:{id}:accounts")]
        return [a for a in accounts if a.tenant == tenant] if tenant else accounts

    # API keys ------------------------------------------------------------------------------------
    async def put_key(self, key: ApiKey) -> None:
        await self._put_record("tn:{id}:keys", key.key_id, key, create=True)

    async def get_key(self, key_id: str) -> ApiKey | None:
        async with self._calls():
            pipe = self.redis.pipeline(transaction=False)
            pipe.hget("tn:{id}:keys", key_id)
            pipe.sismember("tn:{id}:keys:revoked", key_id)
            raw, revoked = await pipe.execute()
        return None if raw is None else layout.api_key(json.loads(raw), bool(revoked))

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        async with self._calls():
            pipe = self.redis.pipeline(transaction=False)
            pipe.hgetall("tn:{id}:keys")
            pipe.smembers("tn:{id}:keys:revoked")
            raw, revoked = await pipe.execute()
        keys = [layout.api_key(json.loads(value), key_id in revoked) for key_id, value in raw.items()]
        keys = [k for k in keys if k.tenant == tenant] if tenant else keys
        return sorted(keys, key=lambda k: (k.created, k.key_id))

    async def revoke_key(self, key_id: str) -> bool:
        # keys are never deleted, so checking first and then marking cannot race with a removal
        async with self._calls():
            if not await self.redis.hexists("tn:{id}:keys", key_id):
                return False
            await self.redis.sadd("tn:{id}:keys:revoked", key_id)
        return True

    # refresh tokens --------------------------------------------------------------------------------
    async def put_refresh(self, token: RefreshToken) -> None:
        key = f"tn:{{id}}:refresh:{token.token_hash}"
        kept = max(math.ceil(token.expires - time.time()), 0) + self.kept_s
        async with self._calls():
            if not await self.redis.hsetnx(key, "data", json.dumps(asdict(token))):
                raise Conflict(f"refresh token {token.token_hash[:8]}… exists")
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(key, mapping={"family": token.family, "expires": repr(float(token.expires))})
            pipe.expire(key, kept)
            await pipe.execute()

    async def use_refresh(self, token_hash: str, now: float) -> tuple[str, RefreshToken | None]:
        keys = [f"tn:{{id}}:refresh:{token_hash}", "tn:{id}:families:revoked"]
        reply = await self.scripts.run(USE_REFRESH, USE_REFRESH.call(keys, [repr(float(now))]))
        if reply[0] == "invalid":
            return "invalid", None
        data = json.loads(reply[1])
        data["used"] = reply[0] == "reused"
        return reply[0], RefreshToken(**data)

    async def revoke_family(self, family: str) -> None:
        async with self._calls():
            await self.redis.sadd("tn:{id}:families:revoked", family)

    async def revoke_jti(self, jti: str, expires: float) -> None:
        ttl = max(math.ceil(expires - time.time()), JTI_MIN_TTL_S)
        async with self._calls():
            await self.redis.set(f"tn:jti:{jti}", repr(float(expires)), ex=ttl, nx=True)

    async def jti_revoked(self, jti: str) -> bool:
        async with self._calls():
            return bool(await self.redis.exists(f"tn:jti:{jti}"))

    # ownership -------------------------------------------------------------------------------------
    async def own_prompt(self, prompt_id: str, tenant: str | None, now: float) -> None:
        async with self._calls():
            await self.redis.set(layout.prompt_key(prompt_id), tenant or "", ex=self.kept_s)

    async def claim_prompt(self, prompt_id: str, tenant: str | None, now: float) -> bool:
        async with self._calls():
            return bool(await self.redis.set(layout.prompt_key(prompt_id), tenant or "", ex=self.kept_s, nx=True))

    async def prompt_owner(self, prompt_id: str) -> str | None:
        async with self._calls():
            return await self.redis.get(layout.prompt_key(prompt_id))

    async def index_output(self, folder: str, subfolder: str, filename: str, tenant: str | None,
                           prompt_id: str) -> None:
        async with self._calls():
            await self.redis.set(layout.output_key(folder, subfolder, filename), json.dumps([tenant, prompt_id]))

    async def output_owner(self, folder: str, subfolder: str, filename: str) -> str | None:
        async with self._calls():
            raw = await self.redis.get(layout.output_key(folder, subfolder, filename))
        return None if raw is None else (json.loads(raw)[0] or "")

    async def forget_outputs(self, files: list[tuple[str, str, str]]) -> None:
        if not files:
            return
        async with self._calls():
            pipe = self.redis.pipeline(transaction=False)  # one key per command: the keys lie in many slots
            for file in files:
                pipe.delete(layout.output_key(*file))
            await pipe.execute()

    async def claim_duty(self, name: str, hold_s: float) -> bool:
        async with self._calls():
            return bool(await self.redis.set(layout.duty_key(name), "1", px=max(1, int(hold_s * 1000)), nx=True))

    # admission -----------------------------------------------------------------------------------------
    async def reserve(self, request: ReserveRequest) -> QuotaDecision:
        return await self._reserve(request)

    async def admit(self, request: ReserveRequest, rate: RateLimit | None = None) -> QuotaDecision:
        """Two round trips: the rate limit, then the claim of the prompt id and the reservation in one script (the
        rate limit's key lives in no tenant's slot)."""
        if rate is not None:
            wait = await self.rate_limit(rate.key, rate.interval_s, rate.burst, request.now)
            if wait > 0:
                return QuotaDecision.rate_limited(wait, request.limit)
        return await self._reserve(request, claim=True)

    async def _reserve(self, request: ReserveRequest, claim: bool = False) -> QuotaDecision:
        r = request
        keys = layout.admission_keys(r.tenant, r.prompt_id) + ([layout.prompt_key(r.prompt_id)] if claim else [])
        reply = await self.scripts.run(RESERVE, RESERVE.call(keys, layout.reserve_arguments(r, self.kept_s)),
                                       listing=r.tenant)
        allowed, reason, used, held, active, replay = reply
        held = float(held) + (float(r.seconds) if allowed and not replay else 0.0)  # it answered held before
        return QuotaDecision(bool(allowed), reason, float(used), held, r.limit, active, replay=bool(replay))

    async def settle(self, tenant: str, prompt_id: str, actual: float, outcome: str,
                     now: float | None = None) -> Reservation | None:
        return await self._settle(tenant, prompt_id, actual, outcome, now, abandon=None)

    async def abandon(self, tenant: str, prompt_id: str, now: float | None = None, *, attempt: str = "",
                      outcome: str = ABANDONED) -> Reservation | None:
        return await self._settle(tenant, prompt_id, 0.0, outcome, now, abandon=attempt)

    async def _settle(self, tenant: str, prompt_id: str, actual: float, outcome: str, now: float | None,
                      abandon: str | None) -> Reservation | None:
        """`abandon`: None to settle, else the attempt abandoned."""
        keys = layout.admission_keys(tenant, prompt_id) + ([] if abandon is None else [layout.prompt_key(prompt_id)])
        arguments = [prompt_id, repr(float(actual)), outcome, layout.now_argument(now), self.kept_s,
                     int(abandon is not None), abandon or ""]
        reply = await self.scripts.run(SETTLE, SETTLE.call(keys, arguments))
        if reply is None:
            return None
        seconds, day, deadline, instance = reply
        return Reservation(tenant, prompt_id, float(seconds), day, float(deadline), instance, "settled", actual,
                           outcome)

    async def mark_started(self, tenant: str, prompt_id: str, now: float) -> None:
        await self.scripts.run(START, START.call(layout.admission_keys(tenant, prompt_id)[:1], [repr(float(now))]))

    async def _held(self, tenants: list[str], before: float | None = None) -> list[Reservation]:
        """Held reservations of these tenants, those with a deadline before `before` when given."""
        async with self._calls():
            pipe = self.redis.pipeline(transaction=False)
            for tenant in tenants:
                if before is None:
                    pipe.zrange(layout.tenant_key(tenant, "active"), 0, -1)
                else:
                    pipe.zrangebyscore(layout.tenant_key(tenant, "active"), "-inf", f"({before!r}")
            held = [(tenant, prompt_id) for tenant, prompt_ids in zip(tenants, await pipe.execute(), strict=True)
                    for prompt_id in prompt_ids]
            pipe = self.redis.pipeline(transaction=False)
            for tenant, prompt_id in held:
                pipe.hgetall(layout.tenant_key(tenant, f"res:{prompt_id}"))
            rows = await pipe.execute()
        return [layout.reservation(tenant, prompt_id, row) for (tenant, prompt_id), row in zip(held, rows, strict=True)
                if row.get("state") == "held"]

    async def _admission_tenants(self) -> list[str]:
        async with self._calls():
            return sorted(await self.redis.smembers(ADMISSION))

    async def holds(self, tenant: str | None = None) -> list[Reservation]:
        return await self._held([tenant] if tenant else await self._admission_tenants())

    async def expired_holds(self, now: float | None = None) -> list[Reservation]:
        if now is None:
            async with self._calls():
                seconds, micros = await self.redis.time()
            now = seconds + micros / 1_000_000
        return await self._held(await self._admission_tenants(), before=now)

    async def instance_holds(self, instance: str) -> list[Reservation]:
        return [r for r in await self.holds() if r.instance == instance]

    async def usage(self, tenant: str, day: str) -> Usage:
        async with self._calls():
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(layout.tenant_key(tenant, "usage"), f"{day}:used", f"{day}:held")
            pipe.zcard(layout.tenant_key(tenant, "active"))
            (used, held), active = await pipe.execute()
        return Usage(float(used or 0), float(held or 0), active)

    async def ledger(self, tenant: str | None = None, since: float | None = None) -> list[LedgerEntry]:
        since = since or 0.0
        entries: list[tuple[tuple[int, int], LedgerEntry]] = []
        for name in [tenant] if tenant else await self._admission_tenants():
            entries += [e for e in await self._stream(name) if e[1].time >= since]
        # one stream per tenant: merging by entry id (server milliseconds, sequence) gives the global order
        return [entry for _, entry in sorted(entries, key=lambda e: e[0])]

    async def _stream(self, tenant: str) -> list[tuple[tuple[int, int], LedgerEntry]]:
        key, start, out = layout.tenant_key(tenant, "ledger"), "-", []
        while True:
            async with self._calls():
                page = await self.redis.xrange(key, start, "+", count=LEDGER_PAGE)
            for entry_id, f in page:
                ms, seq = entry_id.split("-")
                out.append(((int(ms), int(seq)), LedgerEntry(float(f["time"]), tenant, f["prompt_id"], f["kind"],
                                                             float(f["seconds"]), f["day"], f["outcome"])))
            if len(page) < LEDGER_PAGE:
                return out
            start = f"({page[-1][0]}"

    async def rate_limit(self, key: str, interval_s: float, burst: int, now: float | None = None) -> float:
        call = (key, interval_s, burst, now)
        packed = self._rate_calls.get(call)  # a limit's call is the same every time: packed once
        if packed is None:
            if len(self._rate_calls) >= PACKED_RATE_CALLS:
                self._rate_calls.clear()
            packed = self._rate_calls[call] = GCRA.call([f"tn:rate:{key}"],
                                                        [repr(float(interval_s)), int(burst), layout.now_argument(now)])
        return float(await self.scripts.run(GCRA, packed))


__all__ = ["RedisStore"]

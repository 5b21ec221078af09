"""The cluster queue in Redis: one queue of prompts for every guarded ComfyUI sharing the store, handed to idle
workers one at a time in global weighted-fair order, with leases, fencing and reclaim (`lua/cq_*.lua`).

Keys (one hash tag, `{cq}`: every script runs on one slot of a Redis Cluster too):

    tn:{cq}:s:<tenant>      stream  the tenant's queued prompts in arrival order: {pid, number, seconds,
                                    models}; consumer group
                                    `gpu`, one consumer per instance: its pending entries are the prompts it holds,
                                    their idle time the lease (a heartbeat's XCLAIM JUSTID renews it)
    tn:{cq}:ten:<tenant>    hash    queued, running, cap, flast (the tenant's last virtual finish), last (the
                                    stream id last handed out)
    tn:{cq}:retry:<tenant>  list    queued prompts out of the stream, by number, ahead of it: redelivered ones
                                    (never started when their worker was lost) and ones a lookahead passed over;
                                    their entries stay pending under the consumer `~redeliver`
    tn:{cq}:ready           zset    tenant -> number of its next prompt, for tenants with queued prompts under
                                    their cap: the selector's input
    tn:{cq}:tenants         set     tenants with queued or running prompts (the reaper walks them)
    tn:{cq}:vt              string  virtual time: the number of the last prompt started
    tn:{cq}:queued          string  prompts queued in the whole cluster
    tn:{cq}:job:<pid>       hash    tenant, sid, number, state (queued | running | done | error | interrupted |
                                    cancelled | failed), reason, attempt (the fencing token: +1 per hand-out),
                                    owner, started, seconds, settled (who settles its quota: set once), times,
                                    order (its hand-out's place in the cluster's: tn:{cq}:handed counts them),
                                    models (the model files it names, tenancy.affinity.packed), warm (1|0: with
                                    affinity on, whether its worker held them when it claimed it)
    tn:{cq}:body:<pid>      string  what the worker runs: [prompt, extra_data, outputs, plan, admitted, sealed]
                                    (sensitive extra data only sealed: tenancy.sealed_extra)
    tn:{cq}:inst:<name>     string  an instance's liveness (the prompt it runs), expiring after the lease
    tn:{cq}:instances       zset    instance -> when it last beat (ms; names heard from within a day): who to look at
    tn:{cq}:drain           hash    instance -> the mark (Redis ms) of an operator's request to drain it
    tn:{cq}:drained         hash    instance -> the drain mark it acknowledged; from then on it claims nothing

Calls are synchronous (redis-py): ComfyUI's worker thread and `PromptQueue.put` are. Time is Redis's (`TIME`,
pending entries' idle time), shared by every instance. A connection failure, a timeout, and a server that refuses
writes (out of memory under `noeviction`, a read-only replica, a failed save) raise StoreUnavailable: an outage,
not an error of the call (`redis_lane.failure`).

Draining: an operator's `drain` marks an instance; the instance reads the mark with each heartbeat (the script
returns it), stops claiming, and acknowledges the mark only once no claim of its own is in flight, so an
acknowledged drain is final: `status` shows the instance drained once it acknowledged and holds nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import redis

from ..affinity import packed, unpacked
from ..cluster import ClusterStatus, Held, TenantStatus, instance_statuses
from .protocol import KEPT_S
from .redis_lane import failure

LUA = Path(__file__).with_name("lua")
PREFIX = "tn:{cq}:"
SCRIPTS = ("enqueue", "claim", "start", "heartbeat", "complete", "settle", "cancel", "reap")
REAP_BATCH = 100  # stale entries looked at per tenant and reap
REDELIVERY_CONSUMER = "~redeliver"  # cq_common.lua's RETRY_CONSUMER: holds a redelivered prompt's entry


@dataclass(frozen=True)
class Claim:
    prompt_id: str
    attempt: int
    tenant: str
    number: int
    payload: str
    models: tuple[str, ...] = ()  # the model files it names (tenancy.affinity.models_of)


@dataclass(frozen=True)
class Listed:
    """The cluster's queue as every instance shows it (`ClusterQueue.listing`)."""

    pending: list[tuple[int, str, str | None]]  # (number, prompt id, payload; None: the caller knows it)
    queued: int  # prompts queued in the whole cluster
    counts: dict[str, tuple[int, int]]  # tenant -> (queued, running), for tenants with either


@dataclass(frozen=True)
class Reaped:
    prompt_id: str
    tenant: str
    action: str  # redeliver | worker_lost | redelivery_limit (tenancy.cluster.reap_action)
    started: bool
    seconds: float  # reserved
    settle: bool  # this reaper settles its quota
    payload: str = ""  # a failed one's body (tenancy.cluster.Carried), for its history entry and its client
    number: int = 0


class ClusterQueue:
    """One instance's handle on the cluster queue: `instance` names its consumer and fences its writes."""

    def __init__(self, url: str, instance: str, *, lease_s: float, max_redeliveries: int, timeout_s: float = 2.0,
                 kept_s: float = KEPT_S, prefix: str = PREFIX, lookahead: int = 1, affinity: int = 0) -> None:
        self.instance = instance
        self.lookahead = max(int(lookahead), 1)  # tenancy.cluster.in_turn: how many of a tenant's prompts a turn sees
        self.affinity = max(int(affinity), 0)  # tenancy.affinity.affine_tenant's bound in fair units; 0: off
        self.lease_ms = max(int(lease_s * 1000), 1)
        self.max_redeliveries = max_redeliveries
        self.kept_s = max(int(kept_s), 1)
        self.prefix = prefix
        self.redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout_s,
                                          socket_connect_timeout=timeout_s)
        common = (LUA / "cq_common.lua").read_text()
        self._scripts = {name: self.redis.register_script(common + (LUA / f"cq_{name}.lua").read_text())
                         for name in SCRIPTS}
        self.draining: bool | None = None  # None: not known yet (read before the first claim)
        self._acknowledged = ""  # the drain mark this instance acknowledged
        self._claiming = threading.RLock()  # a claim in flight; the drain acknowledgement waits for it

    def _run(self, name: str, *args):
        return self._read(lambda: self._scripts[name](keys=[self.prefix + "ready"], args=list(args)))

    def enqueue(self, prompt_id: str, tenant: str, units: int, cap: int, payload: str, seconds: float,
                models: tuple[str, ...] = ()) -> int:
        """Queue an admitted prompt (again: a no-op); its global number. `models`: the model files it names."""
        number, _new = self._run("enqueue", prompt_id, tenant, units, cap, payload, repr(float(seconds)),
                                 packed(models))
        return int(number)

    def claim(self, held: tuple[str, ...] = ()) -> Claim | None:
        """The next prompt for this instance's idle worker; None when there is none, or while it is drained.
        `held`: the model files this worker holds (tenancy.affinity.held_models), for affinity when it is on."""
        with self._claiming:
            if self.draining is None:  # a restart while drained takes nothing before its first heartbeat
                self._drain_mark(self._read(lambda: self.redis.hget(f"{self.prefix}drain", self.instance)) or "")
            if self.draining:
                return None
            reply = self._run("claim", self.instance, self.lookahead, self.affinity,
                              *(held if self.affinity else ()))
        if not reply:
            return None
        prompt_id, attempt, tenant, number, payload, models = reply
        return Claim(prompt_id, int(attempt), tenant, int(number), payload, unpacked(models))

    def start(self, prompt_id: str, attempt: int) -> bool:
        return bool(self._run("start", prompt_id, self.instance, attempt))

    def heartbeat(self, prompt_id: str, attempt: int) -> bool:
        """Renew the lease of the prompt this instance runs ('' when idle: liveness only); False when fenced. The
        reply carries this instance's drain mark."""
        held, mark = self._run("heartbeat", prompt_id, self.instance, attempt, self.lease_ms)
        self._drain_mark(mark or "")
        return bool(int(held))

    def _drain_mark(self, mark: str) -> None:
        """Follow the operator's drain request: stop claiming, then acknowledge the mark (no claim is in flight
        then, so none follows the acknowledgement); an undrained instance claims again."""
        if mark == self._acknowledged and self.draining is not None:
            return
        with self._claiming:
            self.draining = bool(mark)
            if mark:
                self._read(lambda: self.redis.hset(f"{self.prefix}drained", self.instance, mark))
            self._acknowledged = mark

    def drain(self, name: str) -> str:
        """Ask instance `name` to take no new prompts (again: the first request stands); its drain mark."""
        def write() -> str:
            seconds, micros = self.redis.time()
            self.redis.hsetnx(f"{self.prefix}drain", name, str(seconds * 1000 + micros // 1000))
            return self.redis.hget(f"{self.prefix}drain", name)
        return self._read(write)

    def undrain(self, name: str) -> bool:
        """Let instance `name` claim again (it sees it at its next heartbeat); False when it was not drained."""
        def write() -> bool:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hdel(f"{self.prefix}drain", name)
            pipe.hdel(f"{self.prefix}drained", name)
            return bool(pipe.execute()[0])
        return self._read(write)

    def complete(self, prompt_id: str, attempt: int, state: str) -> bool:
        return bool(self._run("complete", prompt_id, self.instance, attempt, state, self.kept_s))

    def may_settle(self, prompt_id: str, attempt: int) -> bool:
        return bool(self._run("settle", prompt_id, self.instance, attempt))

    def cancel(self, prompt_id: str) -> tuple[bool, str, bool]:
        """(cancelled now, tenant, this caller refunds it) for a queued prompt."""
        reply = self._run("cancel", prompt_id, self.kept_s)
        if reply[0] == 1:
            return True, reply[1], bool(reply[2])
        return False, reply[2], False

    def reap(self) -> list[Reaped]:
        rows = self._run("reap", self.lease_ms, self.max_redeliveries, self.kept_s, REAP_BATCH)
        return [Reaped(pid, tenant, action, bool(int(started)), float(seconds or 0), bool(settle), payload,
                       int(number)) for pid, tenant, action, started, seconds, settle, payload, number in rows]

    def job(self, prompt_id: str) -> dict:
        return self._read(lambda: self.redis.hgetall(f"{self.prefix}job:{prompt_id}"))

    def queued(self) -> int:
        return int(self._read(lambda: self.redis.get(f"{self.prefix}queued")) or 0)

    def pending(self, limit: int = 1000) -> list[tuple[int, str, str]]:
        """(number, prompt id, payload) of queued prompts, cluster-wide, lowest number first (at most `limit` per
        tenant): what /queue lists and what deleting from the queue looks through."""
        return self.listing(limit=limit).pending

    def listing(self, known=frozenset(), limit: int = 1000) -> Listed:
        """`pending` (payloads only of prompts `known` does not name: a queued prompt's payload never changes), the
        cluster's queued count and every tenant's (queued, running), in the round trips `pending` takes alone."""
        def read() -> Listed:
            tenants = sorted(self.redis.smembers(f"{self.prefix}tenants"))
            waiting = [pid for pids in self._waiting(tenants, limit).values() for pid in pids]
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(f"{self.prefix}queued")
            for tenant in tenants:
                pipe.hmget(f"{self.prefix}ten:{tenant}", "queued", "running")
            for pid in waiting:
                pipe.hmget(f"{self.prefix}job:{pid}", "number", "state")
                if pid not in known:
                    pipe.get(f"{self.prefix}body:{pid}")
            replies = iter(pipe.execute())
            queued = int(next(replies) or 0)
            counts = {}
            for tenant in tenants:
                held = next(replies)
                counts[tenant] = (int(held[0] or 0), int(held[1] or 0))
            found = []
            for pid in waiting:
                number, state = next(replies)
                body = None if pid in known else next(replies)
                if state == "queued" and (body is not None or pid in known):
                    found.append((int(number), pid, body))
            return Listed(sorted(found, key=lambda row: row[:2]), queued, counts)
        return self._read(read)

    def running(self, tenant: str) -> list[tuple[int, str, str]]:
        """(number, prompt id, payload) of the tenant's prompts handed to a worker and not ended (running, or just
        claimed), on every instance, lowest number first: what its /queue lists as running. Costs what it holds."""
        stream = f"{self.prefix}s:{tenant}"

        def read() -> list[tuple[int, str, str]]:
            if not int(self.redis.hget(f"{self.prefix}ten:{tenant}", "running") or 0):
                return []
            held = [p["message_id"] for p in self.redis.xpending_range(stream, "gpu", "-", "+", REAP_BATCH)
                    if p["consumer"] != REDELIVERY_CONSUMER]
            pipe = self.redis.pipeline(transaction=False)
            for message_id in held:
                pipe.xrange(stream, message_id, message_id)
            pids = [found[0][1]["pid"] for found in pipe.execute() if found]
            pipe = self.redis.pipeline(transaction=False)
            for pid in pids:
                pipe.hmget(f"{self.prefix}job:{pid}", "number", "state")
                pipe.get(f"{self.prefix}body:{pid}")
            rows = pipe.execute()
            return sorted((int(row[0]), pid, body) for pid, row, body in zip(pids, rows[0::2], rows[1::2], strict=True)
                          if row[1] == "running" and body is not None)
        return self._read(read)

    def _waiting(self, tenants: list[str], limit: int) -> dict[str, list[str]]:
        """Per tenant, the ids of its queued prompts by number (at most `limit` of each kind): its retry list
        (redelivered and passed-over ones) first, then its stream after the entry last handed out (cq_common.lua's
        `head`)."""
        pipe = self.redis.pipeline(transaction=False)
        for tenant in tenants:
            pipe.lrange(f"{self.prefix}retry:{tenant}", 0, limit - 1)
            pipe.hget(f"{self.prefix}ten:{tenant}", "last")
        replies = pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        for tenant, last in zip(tenants, replies[1::2], strict=True):
            pipe.xrange(f"{self.prefix}s:{tenant}", f"({last or '0-0'}", "+", count=limit)
        streams = pipe.execute()
        return {tenant: [*retried, *(fields["pid"] for _sid, fields in entries)]
                for tenant, retried, entries in zip(tenants, replies[0::2], streams, strict=True)}

    def status(self) -> ClusterStatus:
        """What an operator sees of the cluster: instances (liveness from heartbeats) and the prompts each holds,
        per tenant its queue depth, running count and the wait of its oldest queued prompt. Reads only."""
        def read() -> ClusterStatus:
            seconds, micros = self.redis.time()
            now_ms = seconds * 1000 + micros // 1000
            tenants = sorted(self.redis.smembers(f"{self.prefix}tenants"))
            heads = {tenant: pids[0] for tenant, pids in self._waiting(tenants, 1).items() if pids}
            pipe = self.redis.pipeline(transaction=False)
            for tenant in tenants:
                pipe.hmget(f"{self.prefix}ten:{tenant}", "queued", "running", "cap")
            for pid in heads.values():
                pipe.hget(f"{self.prefix}job:{pid}", "created")
            replies = pipe.execute()
            created = dict(zip(heads, replies[len(tenants):], strict=True))
            rows = tuple(TenantStatus(tenant, int(c[0] or 0), int(c[1] or 0), int(c[2] or 0),
                                      (now_ms - int(created[tenant])) / 1000 if created.get(tenant) else None)
                         for tenant, c in zip(tenants, replies[:len(tenants)], strict=True))
            pipe = self.redis.pipeline(transaction=False)
            pipe.hgetall(f"{self.prefix}drain")
            pipe.hgetall(f"{self.prefix}drained")
            asked, acknowledged = pipe.execute()
            drains = {name: (mark, acknowledged.get(name)) for name, mark in asked.items()}
            instances = instance_statuses(self._beats(), self._held(tenants, now_ms), self.lease_ms, drains)
            return ClusterStatus(int(self.redis.get(f"{self.prefix}queued") or 0), instances, rows)
        return self._read(read)

    def _beats(self) -> dict[str, int]:
        """Instance -> milliseconds its heartbeat key has left (the key expires a lease after the last beat)."""
        names = self.redis.zrange(f"{self.prefix}instances", 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.pttl(f"{self.prefix}inst:{name}")
        return {name: ttl for name, ttl in zip(names, pipe.execute(), strict=True) if ttl >= 0}

    def _held(self, tenants: list[str], now_ms: int) -> dict[str, list[Held]]:
        """Instance -> the prompts it holds (pending entries of the tenants' streams; redelivered ones, parked
        under the redelivery consumer, are queued and not listed)."""
        pipe = self.redis.pipeline(transaction=False)
        for tenant in tenants:
            pipe.xpending_range(f"{self.prefix}s:{tenant}", "gpu", "-", "+", REAP_BATCH)
        entries = [(tenant, pending) for tenant, pendings in zip(tenants, pipe.execute(), strict=True)
                   for pending in pendings if pending["consumer"] != REDELIVERY_CONSUMER]
        pipe = self.redis.pipeline(transaction=False)
        for tenant, pending in entries:
            pipe.xrange(f"{self.prefix}s:{tenant}", pending["message_id"], pending["message_id"])
        pids = [found[0][1]["pid"] if found else "" for found in pipe.execute()]
        pipe = self.redis.pipeline(transaction=False)
        for pid in pids:
            pipe.hmget(f"{self.prefix}job:{pid}", "started", "claimed")
        held: dict[str, list[Held]] = {}
        for (tenant, pending), pid, (started, claimed) in zip(entries, pids, pipe.execute(), strict=True):
            held.setdefault(pending["consumer"], []).append(
                Held(pid, tenant, started == "1", (now_ms - int(claimed or now_ms)) / 1000,
                     pending["time_since_delivered"] / 1000))
        return held

    def _read(self, call):
        try:
            return call()
        except redis.RedisError as exc:
            unavailable = failure("cluster queue", exc)
            if unavailable is exc:
                raise
            raise unavailable from exc

    def close(self) -> None:
        self.redis.close()

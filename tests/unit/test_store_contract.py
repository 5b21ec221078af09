"""The store contract: every case runs against SQLite and against a real redis-server, which must agree exactly.

Identity (tenants, accounts, keys, refresh rotation, revoked tokens), prompt ownership, the output index, and
admission: reserve / settle / refund / reaper, idempotency, day rollover, GCRA, concurrency caps, and races
forced with barriers inside one process and across two processes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import signal
import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis

from tenancy.records import Account, ApiKey, RateLimit, RefreshToken, ReserveRequest, Tenant, Usage
from tenancy.store import Conflict, StoreUnavailable, open_store
from tenancy.store.redis import RedisStore
from tenancy.store.sqlite import SqliteStore
from tests.harness.redis import RedisServer

DAY, NEXT_DAY = "2026-11-22", "2026-11-23"
NOW = 1_795_305_600.0  # 2026-11-22 00:00 UTC
MIDNIGHT = NOW + 86400


@dataclass(frozen=True)
class Backend:
    """Where a store lives, so other store objects and other processes can open the same one."""

    kind: str
    target: str

    def open(self, **options):
        return SqliteStore(Path(self.target), **options) if self.kind == "sqlite" else \
            RedisStore(self.target, **options)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request, tmp_path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "store.db"))
    server = request.getfixturevalue("redis_server")
    with redis.Redis.from_url(server.url) as client:
        client.flushdb()
    return Backend("redis", server.url)


def contract(case):
    """Turn `async def case(store)` into a test that runs it on a fresh store of each backend."""

    def test(backend: Backend) -> None:
        async def run() -> None:
            store = backend.open()
            try:
                await case(store)
            finally:
                await store.close()

        asyncio.run(run())

    test.__name__, test.__doc__ = case.__name__, case.__doc__
    return test


def hold(prompt_id: str, seconds: float = 10.0, *, tenant: str = "acme", limit: float = 100.0,
         max_active: int = 100, day: str = DAY, deadline: float = NOW + 300, instance: str = "i1",
         now: float | None = NOW, attempt: str = "") -> ReserveRequest:
    return ReserveRequest(tenant, prompt_id, seconds, limit, max_active, day, deadline, instance, now, attempt)


# identity ----------------------------------------------------------------------------------------------------
@contract
async def test_tenants_are_created_once_and_replaced_on_update(store):
    await store.put_tenant(Tenant("zeta", "basic"), create=True)
    await store.put_tenant(Tenant("acme", "trial", tags=("eu", "beta")), create=True)
    with pytest.raises(Conflict):
        await store.put_tenant(Tenant("acme", "basic"), create=True)
    await store.put_tenant(Tenant("acme", "premium", status="disabled", tags=("eu",)), create=False)
    assert await store.get_tenant("acme") == Tenant("acme", "premium", status="disabled", tags=("eu",))
    assert await store.get_tenant("nobody") is None
    assert [t.id for t in await store.list_tenants()] == ["acme", "zeta"]


@contract
async def test_accounts_are_listed_by_username_and_tenant(store):
    for account in (Account("zoe", "acme", "member", "h1"), Account("root", None, "admin", "h2"),
                    Account("bob", "beta", "tenant_admin", "h3", disabled=True),
                    Account("amy", "acme", "member", "h4")):
        await store.put_account(account, create=True)
    with pytest.raises(Conflict):
        await store.put_account(Account("amy", "beta", "member", "x"), create=True)
    await store.put_account(Account("amy", "acme", "tenant_admin", "h5"), create=False)
    assert await store.get_account("amy") == Account("amy", "acme", "tenant_admin", "h5")
    assert await store.get_account("bob") == Account("bob", "beta", "tenant_admin", "h3", disabled=True)
    assert await store.get_account("nobody") is None
    assert [a.username for a in await store.list_accounts()] == ["amy", "bob", "root", "zoe"]
    assert [a.username for a in await store.list_accounts("acme")] == ["amy", "zoe"]


@contract
async def test_api_keys_are_unique_listed_by_creation_and_revocable(store):
    second = ApiKey("k2", "acme", "member", "ci", "hash2", created=NOW + 1, expires=NOW + 86400)
    first = ApiKey("k1", "acme", "tenant_admin", "laptop", "hash1", created=NOW)
    admin = ApiKey("k3", None, "admin", "ops", "hash3", created=NOW + 2)
    for key in (second, first, admin):
        await store.put_key(key)
    with pytest.raises(Conflict):
        await store.put_key(replace(first, name="again"))
    assert await store.get_key("k2") == second
    assert await store.revoke_key("k2") is True
    assert await store.revoke_key("unknown") is False
    assert await store.get_key("k2") == replace(second, revoked=True)
    assert await store.get_key("unknown") is None
    assert [k.key_id for k in await store.list_keys()] == ["k1", "k2", "k3"]
    assert await store.list_keys("acme") == [first, replace(second, revoked=True)]


@contract
async def test_refresh_tokens_rotate_once_and_reuse_revokes_the_family(store):
    one = RefreshToken("h1", "fam", "account:amy", "acme", "member", expires=NOW + 3600)
    await store.put_refresh(one)
    with pytest.raises(Conflict):
        await store.put_refresh(one)
    assert await store.use_refresh("h1", NOW) == ("ok", one)
    two = replace(one, token_hash="h2")
    await store.put_refresh(two)
    assert await store.use_refresh("h1", NOW + 1) == ("reused", replace(one, used=True))
    assert await store.use_refresh("h2", NOW + 2) == ("invalid", None)  # its family is revoked now
    assert await store.use_refresh("unknown", NOW) == ("invalid", None)


@contract
async def test_refresh_tokens_expire_and_families_can_be_revoked(store):
    admin = RefreshToken("h1", "fam1", "account:root", None, "admin", expires=NOW + 60)
    other = RefreshToken("h2", "fam2", "account:amy", "acme", "member", expires=NOW + 60)
    await store.put_refresh(admin)
    await store.put_refresh(other)
    assert await store.use_refresh("h1", NOW + 61) == ("invalid", None)
    assert await store.use_refresh("h1", NOW + 60) == ("ok", admin)  # still valid at its expiry instant
    await store.revoke_family("fam2")
    assert await store.use_refresh("h2", NOW) == ("invalid", None)


@contract
async def test_revoked_access_tokens_are_remembered(store):
    await store.revoke_jti("jti-1", time.time() + 3600)
    await store.revoke_jti("jti-1", time.time() + 7200)
    assert await store.jti_revoked("jti-1") is True
    assert await store.jti_revoked("jti-2") is False


# ownership -----------------------------------------------------------------------------------------------
@contract
async def test_prompt_owner_is_the_tenant_an_admin_or_unknown(store):
    await store.own_prompt("p1", "acme", NOW)
    await store.own_prompt("p2", None, NOW)
    assert await store.prompt_owner("p1") == "acme"
    assert await store.prompt_owner("p2") == ""
    assert await store.prompt_owner("p9") is None
    await store.own_prompt("p1", "beta", NOW + 1)
    assert await store.prompt_owner("p1") == "beta"


@contract
async def test_output_index_names_the_owner_of_each_file(store):
    await store.index_output("output", "", "a.mp4", "acme", "p1")
    await store.index_output("output", "sub", "a.mp4", None, "p2")
    await store.index_output("output", "", "a.mp4", "beta", "p3")  # the same file written again
    assert await store.output_owner("output", "", "a.mp4") == "beta"
    assert await store.output_owner("output", "sub", "a.mp4") == ""
    assert await store.output_owner("temp", "", "a.mp4") is None


@contract
async def test_forgotten_outputs_leave_the_index(store):
    """The retention sweep deleted them: their owner is no longer known; the others stay."""
    await store.index_output("output", "tenants/acme", "old.png", "acme", "p1")
    await store.index_output("output", "tenants/acme/sub", "old.png", "acme", "p2")
    await store.index_output("output", "tenants/acme", "new.png", "acme", "p3")
    await store.forget_outputs([("output", "tenants/acme", "old.png"), ("output", "tenants/acme/sub", "old.png"),
                                ("output", "tenants/acme", "never-indexed.png")])
    await store.forget_outputs([])
    assert await store.output_owner("output", "tenants/acme", "old.png") is None
    assert await store.output_owner("output", "tenants/acme/sub", "old.png") is None
    assert await store.output_owner("output", "tenants/acme", "new.png") == "acme"


@contract
async def test_a_duty_is_taken_by_one_caller_a_period(store):
    """One instance sweeps the bucket a period: the first claim wins, the others are refused until the hold
    ends, then the next claim wins again; another duty is its own."""
    assert await store.claim_duty("sweep", 0.3)
    assert not await store.claim_duty("sweep", 0.3)
    assert await store.claim_duty("other", 60)
    await asyncio.sleep(0.4)  # the 0.3 s hold must run out (both backends take their own clocks)
    assert await store.claim_duty("sweep", 60)
    assert not await store.claim_duty("sweep", 60)


# admission: reserve and settle -----------------------------------------------------------------------------
@contract
async def test_reserve_holds_seconds_and_settle_charges_the_actual(store):
    decision = await store.reserve(hold("p1", 10.0))
    assert (decision.allowed, decision.reason, decision.used, decision.held, decision.active) == \
        (True, "ok", 0, 10.0, 1)
    assert decision.remaining == 90.0 and not decision.replay
    assert await store.usage("acme", DAY) == Usage(0, 10.0, 1)
    settled = await store.settle("acme", "p1", 7.5, "success", now=NOW + 30)
    assert (settled.tenant, settled.prompt_id, settled.seconds, settled.day, settled.deadline, settled.instance,
            settled.state, settled.actual, settled.outcome) == \
        ("acme", "p1", 10.0, DAY, NOW + 300, "i1", "settled", 7.5, "success")
    usage = await store.usage("acme", DAY)
    assert (usage.used, usage.held, usage.active) == (7.5, 0, 0)
    assert await store.holds() == []


@contract
async def test_holds_of_whole_milliseconds_return_to_exactly_zero(store):
    """Found by CI: a day's hold left at 4.4e-16 after its last prompt settled, for ever (a float's residue)."""
    reserved = {"p0": 0.5, "p1": 1.9, "p2": 0.3, "p3": 0.9, "p4": 0.4, "p5": 1.6, "p6": 1.5, "p7": 1.6, "p8": 1.3}
    for prompt_id, seconds in reserved.items():
        await store.reserve(hold(prompt_id, seconds))
    for prompt_id in ["p5", "p7", "p2", "p4", "p6", "p0", "p8", "p1", "p3"]:  # in plain floats: held 7.8e-16
        await store.settle("acme", prompt_id, reserved[prompt_id], "success", now=NOW + 30)
    usage = await store.usage("acme", DAY)
    assert (usage.used, usage.held, usage.active) == (10.0, 0, 0)


@contract
async def test_a_retried_reserve_replays_the_same_decision(store):
    first = await store.reserve(hold("p1", 10.0, limit=15.0))
    again = await store.reserve(hold("p1", 10.0, limit=15.0))
    assert again == replace(first, replay=True)
    refused = await store.reserve(hold("p2", 10.0, limit=15.0))
    assert (refused.allowed, refused.reason) == (False, "quota_exceeded")
    assert await store.reserve(hold("p2", 1.0, limit=15.0)) == replace(refused, replay=True)
    usage = await store.usage("acme", DAY)
    assert (usage.held, usage.active) == (10.0, 1)
    assert [e.prompt_id for e in await store.ledger()] == ["p1"]  # refusals and replays are not ledgered
    await store.settle("acme", "p1", 4.0, "success", now=NOW + 1)
    replayed = await store.reserve(hold("p1", 10.0, limit=15.0))
    assert (replayed.allowed, replayed.reason, replayed.used, replayed.held, replayed.replay) == \
        (True, "ok", 4.0, 0, True)


@contract
async def test_settle_happens_exactly_once(store):
    await store.reserve(hold("p1", 10.0))
    assert await store.settle("beta", "p1", 3.0, "success") is None  # another tenant's prompt
    assert await store.settle("acme", "p1", 3.0, "success", now=NOW + 1) is not None
    assert await store.settle("acme", "p1", 3.0, "success", now=NOW + 2) is None
    assert await store.settle("acme", "unknown", 3.0, "success") is None
    await store.reserve(hold("refused", 500.0))
    assert await store.settle("acme", "refused", 1.0, "success") is None
    assert (await store.usage("acme", DAY)).used == 3.0
    assert [(e.kind, e.seconds) for e in await store.ledger("acme")] == [("reserve", 10.0), ("settle", 3.0)]


@contract
async def test_a_refund_settles_with_zero_seconds(store):
    await store.reserve(hold("p1", 40.0, limit=50.0))
    assert not (await store.reserve(hold("p2", 20.0, limit=50.0))).allowed
    refund = await store.settle("acme", "p1", 0.0, "failed", now=NOW + 1)
    assert (refund.actual, refund.outcome) == (0.0, "failed")
    usage = await store.usage("acme", DAY)
    assert (usage.used, usage.held, usage.active) == (0, 0, 0)
    assert (await store.reserve(hold("p3", 50.0, limit=50.0))).allowed


@contract
async def test_refusals_say_why_and_what_remains(store):
    assert (await store.reserve(hold("p1", 20.0, limit=30.0))).remaining == 10.0
    over = await store.reserve(hold("p2", 20.0, limit=30.0))
    assert (over.allowed, over.reason, over.used, over.held, over.active, over.remaining) == \
        (False, "quota_exceeded", 0, 20.0, 1, 10.0)
    exact = await store.reserve(hold("p3", 10.0, limit=30.0))
    assert (exact.allowed, exact.remaining) == (True, 0.0)
    busy = await store.reserve(hold("p4", 0.0, limit=30.0, max_active=2))
    assert (busy.allowed, busy.reason, busy.active) == (False, "concurrency_limit", 2)


@contract
async def test_a_negative_limit_is_unlimited(store):
    decision = await store.reserve(hold("p1", 1e9, limit=-1))
    assert (decision.allowed, decision.remaining, decision.limit) == (True, -1.0, -1)
    assert (await store.reserve(hold("p2", 1e9, limit=-1))).held == 2e9


@contract
async def test_the_concurrency_cap_counts_held_prompts_of_every_day(store):
    assert (await store.reserve(hold("p1", max_active=2))).active == 1
    assert (await store.reserve(hold("p2", max_active=2, day=NEXT_DAY))).active == 2
    assert (await store.reserve(hold("p3", max_active=2))).reason == "concurrency_limit"
    assert (await store.reserve(hold("p1", max_active=2))).allowed  # a replay, not a new prompt
    await store.settle("acme", "p1", 1.0, "success", now=NOW + 1)
    assert (await store.reserve(hold("p4", max_active=2))).active == 2
    assert (await store.reserve(hold("other", max_active=2, tenant="beta"))).active == 1
    assert (await store.usage("acme", DAY)).active == 2


@contract
async def test_a_hold_settled_after_midnight_is_charged_to_its_own_day(store):
    await store.reserve(hold("late", 30.0, limit=60.0, now=MIDNIGHT - 5))
    await store.settle("acme", "late", 25.0, "success", now=MIDNIGHT + 5)
    today, tomorrow = await store.usage("acme", DAY), await store.usage("acme", NEXT_DAY)
    assert (today.used, today.held) == (25.0, 0)
    assert (tomorrow.used, tomorrow.held, tomorrow.active) == (0, 0, 0)
    fresh = await store.reserve(hold("next", 60.0, limit=60.0, day=NEXT_DAY, now=MIDNIGHT + 6))
    assert (fresh.allowed, fresh.used, fresh.held) == (True, 0, 60.0)
    assert [(e.kind, e.day, e.time) for e in await store.ledger("acme")] == \
        [("reserve", DAY, MIDNIGHT - 5), ("settle", DAY, MIDNIGHT + 5), ("reserve", NEXT_DAY, MIDNIGHT + 6)]


@contract
async def test_the_reaper_finds_holds_past_their_deadline(store):
    await store.reserve(hold("soon", deadline=NOW + 10, instance="i1"))
    await store.reserve(hold("later", deadline=NOW + 1000, instance="i2"))
    await store.reserve(hold("beta-soon", tenant="beta", deadline=NOW + 5, instance="i2"))
    await store.reserve(hold("refused", 1000.0, deadline=NOW, instance="i1"))
    assert await store.expired_holds(now=NOW + 5) == []  # a deadline is expired only once passed
    expired = await store.expired_holds(now=NOW + 100)
    assert sorted((r.tenant, r.prompt_id, r.state, r.instance) for r in expired) == \
        [("acme", "soon", "held", "i1"), ("beta", "beta-soon", "held", "i2")]
    assert sorted(r.prompt_id for r in await store.instance_holds("i2")) == ["beta-soon", "later"]
    assert sorted(r.prompt_id for r in await store.holds("acme")) == ["later", "soon"]
    assert len(await store.holds()) == 3
    for reservation in expired:
        reaped = await store.settle(reservation.tenant, reservation.prompt_id, 0.0, "reaped", now=NOW + 100)
        assert reaped.outcome == "reaped"
    assert await store.expired_holds(now=NOW + 100) == []
    assert [r.prompt_id for r in await store.holds()] == ["later"]
    assert (await store.usage("acme", DAY)).active == 1


@contract
async def test_a_hold_remembers_when_its_prompt_started_and_only_while_held(store):
    await store.reserve(hold("ran"))
    await store.reserve(hold("waiting"))
    await store.mark_started("acme", "ran", NOW + 3)
    await store.mark_started("acme", "ran", NOW + 9)  # a replayed start keeps the first time
    await store.mark_started("acme", "never-reserved", NOW + 3)  # unknown: nothing is created
    started = {r.prompt_id: r.started for r in await store.holds("acme")}
    assert started == {"ran": NOW + 3, "waiting": None}
    await store.settle("acme", "waiting", 0.0, "refund")
    await store.mark_started("acme", "waiting", NOW + 4)  # settled: nothing changes
    assert [r.prompt_id for r in await store.holds("acme")] == ["ran"]
    assert await store.settle("acme", "never-reserved", 1.0, "success") is None


@contract
async def test_an_abandoned_prompt_is_refunded_and_a_reserve_arriving_late_is_refused(store):
    await store.reserve(hold("held", 10.0))
    abandoned = await store.abandon("acme", "held", now=NOW + 1)
    assert (abandoned.outcome, abandoned.actual, abandoned.seconds) == ("abandoned", 0.0, 10.0)
    assert await store.abandon("acme", "held") is None  # once
    assert await store.abandon("acme", "in-flight") is None
    late = await store.reserve(hold("in-flight"))  # sent before its caller gave up on the store, arriving now
    assert (late.allowed, late.reason, late.replay) == (False, "abandoned", True)
    usage = await store.usage("acme", DAY)
    assert (usage.used, usage.held, usage.active) == (0.0, 0.0, 0)
    assert await store.holds() == []
    assert [(e.prompt_id, e.kind, e.outcome) for e in await store.ledger("acme")] == \
        [("held", "reserve", ""), ("held", "settle", "abandoned")]


def test_an_older_sqlite_file_gains_the_started_column(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE reservations (prompt_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, seconds REAL NOT "
                   "NULL, day TEXT NOT NULL, deadline REAL NOT NULL, instance TEXT NOT NULL, state TEXT NOT NULL, "
                   "actual REAL NOT NULL, outcome TEXT NOT NULL, allowed INTEGER NOT NULL, reason TEXT NOT NULL) "
                   "WITHOUT ROWID")

    async def run() -> None:
        store = SqliteStore(path)
        await store.reserve(hold("p"))
        await store.mark_started("acme", "p", NOW + 1)
        assert [r.started for r in await store.holds()] == [NOW + 1]
        await store.close()

    asyncio.run(run())


@contract
async def test_the_store_clock_is_used_when_now_is_not_given(store):
    before = time.time()
    await store.reserve(hold("p1", deadline=before - 1, now=None))
    await store.reserve(hold("p2", deadline=before + 3600, now=None))
    assert [r.prompt_id for r in await store.expired_holds()] == ["p1"]
    await store.settle("acme", "p1", 2.0, "success")
    times = [e.time for e in await store.ledger("acme")]
    assert all(before - 1 <= t <= time.time() + 1 for t in times) and len(times) == 3
    assert await store.rate_limit("ip:1", 60.0, 1) == 0.0
    assert 59.0 <= await store.rate_limit("ip:1", 60.0, 1) <= 60.0


@contract
async def test_ledger_sums_equal_usage(store):
    rng = random.Random(7)
    for n in range(40):
        tenant, day = rng.choice(("acme", "beta")), rng.choice((DAY, NEXT_DAY))
        prompt = f"p{n}"
        await store.reserve(hold(prompt, rng.choice((5.0, 12.5, 30.1)), tenant=tenant, day=day, limit=400.0,
                                 now=NOW + n))
        if rng.random() < 0.7:
            await store.settle(tenant, prompt, rng.choice((0.0, 3.3, 12.5)), "success", now=NOW + n + 0.5)
    entries = await store.ledger()
    assert len(entries) == len(await store.ledger("acme")) + len(await store.ledger("beta"))
    for tenant in ("acme", "beta"):
        for day in (DAY, NEXT_DAY):
            usage = await store.usage(tenant, day)
            mine = [e for e in entries if e.tenant == tenant and e.day == day]
            settled = {e.prompt_id for e in mine if e.kind == "settle"}
            assert usage.used == pytest.approx(sum(e.seconds for e in mine if e.kind == "settle"))
            assert usage.held == pytest.approx(sum(e.seconds for e in mine
                                                   if e.kind == "reserve" and e.prompt_id not in settled))
    assert [e.time for e in await store.ledger(since=NOW + 20)] == [e.time for e in entries if e.time >= NOW + 20]


def test_decided_reservations_and_prompt_owners_are_forgotten_after_kept_s(backend: Backend) -> None:
    """Settled and refused reservations and prompt owners go KEPT_S after (here 1 s, real time: Redis expires
    keys by its own clock); a held reservation, usage and the ledger stay."""
    async def run() -> None:
        store = backend.open(kept_s=1)
        try:
            now = time.time()
            for prompt in ("settled", "held"):
                assert (await store.admit(hold(prompt, 10.0, deadline=now, now=None))).allowed
            assert (await store.reserve(hold("refused", 500.0, deadline=now, now=None))).reason == "quota_exceeded"
            await store.settle("acme", "settled", 4.0, "success")
            assert await store.prompt_owner("settled") == "acme"
            await asyncio.sleep(2.1)
            await store.prune()
            assert await store.prompt_owner("settled") is None
            for prompt, seconds in (("settled", 10.0), ("refused", 5.0)):  # decided anew, not replayed
                again = await store.reserve(hold(prompt, seconds, deadline=now + 60, now=None))
                assert (again.allowed, again.replay) == (True, False)
            assert sorted(r.prompt_id for r in await store.holds()) == ["held", "refused", "settled"]
            assert (await store.settle("acme", "held", 1.0, "success")).seconds == 10.0
            assert [(e.prompt_id, e.kind) for e in await store.ledger()][:3] == \
                [("settled", "reserve"), ("held", "reserve"), ("settled", "settle")]
            assert (await store.usage("acme", DAY)).used == 5.0
        finally:
            await store.close()

    asyncio.run(run())


# rate limits ------------------------------------------------------------------------------------------------
@contract
async def test_gcra_allows_a_burst_then_gives_the_exact_retry_after(store):
    assert [await store.rate_limit("login:1.2.3.4", 2.0, 3, now=1000.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await store.rate_limit("login:1.2.3.4", 2.0, 3, now=1000.0) == 2.0
    assert await store.rate_limit("login:1.2.3.4", 2.0, 3, now=1001.5) == 0.5
    assert await store.rate_limit("login:1.2.3.4", 2.0, 3, now=1002.0) == 0.0
    assert await store.rate_limit("login:5.6.7.8", 2.0, 3, now=1002.0) == 0.0  # its own key
    assert await store.rate_limit("prompt:acme", 60.0, 1, now=1000.0) == 0.0
    assert await store.rate_limit("prompt:acme", 60.0, 1, now=1000.25) == 59.75
    assert await store.rate_limit("prompt:acme", 60.0, 0, now=1060.0) == 0.0  # burst 0 behaves as 1


@contract
async def test_gcra_matches_the_reference_arithmetic(store):
    rng = random.Random(3)
    tat, now, interval, burst = None, 500.0, 0.1, 5
    for _ in range(200):
        now += rng.choice((0.0, 0.013, 0.07, 0.3))
        expected_tat = max(tat if tat is not None else now, now)
        if expected_tat - now > interval * (burst - 1):
            expected = expected_tat - now - interval * (burst - 1)
        else:
            expected, tat = 0.0, expected_tat + interval
        assert await store.rate_limit("upload:acme", interval, burst, now=now) == expected


@contract
async def test_admit_applies_the_rate_limit_then_owns_and_reserves(store):
    rate = RateLimit("rl:prompt:acme", 60.0, 2)
    first = await store.admit(hold("p1", now=1000.0), rate)
    assert first.allowed and first.reason == "ok" and first.held == 10.0
    assert await store.prompt_owner("p1") == "acme"
    assert (await store.admit(hold("p2", now=1000.0), rate)).allowed
    throttled = await store.admit(hold("p3", now=1030.0), rate)
    assert (throttled.allowed, throttled.reason, throttled.retry_after) == (False, "rate_limited", 30.0)
    assert await store.prompt_owner("p3") is None  # refused before anything was recorded
    assert sorted(h.prompt_id for h in await store.holds("acme")) == ["p1", "p2"]
    refused = await store.admit(hold("p4", 95.0, now=1060.0), rate)
    assert (refused.allowed, refused.reason) == (False, "quota_exceeded")  # the quota still applies
    assert (await store.admit(hold("p5", now=2000.0))).allowed  # no rate limit given: none applied


@contract
async def test_an_admitted_prompt_id_is_claimed_and_refused_to_every_later_attempt_of_anyone(store):
    first = await store.admit(hold("p1", attempt="a1"))
    assert first.allowed and await store.prompt_owner("p1") == "acme"
    for retry in (hold("p1", attempt="a2"), hold("p1", tenant="globex", attempt="g1")):
        taken = await store.admit(retry)
        assert (taken.allowed, taken.reason, taken.replay) == (False, "prompt_id_taken", False)
    await store.settle("acme", "p1", 4.0, "success", now=NOW + 5)
    assert (await store.admit(hold("p1", attempt="a3"))).reason == "prompt_id_taken"  # settled: still used
    assert await store.prompt_owner("p1") == "acme"
    assert await store.usage("acme", DAY) == Usage(4.0, 0.0, 0)
    assert await store.usage("globex", DAY) == Usage(0.0, 0.0, 0)
    assert [(e.prompt_id, e.kind) for e in await store.ledger()] == [("p1", "reserve"), ("p1", "settle")]


@contract
async def test_a_refused_admission_leaves_the_prompt_id_free_for_a_retry_decided_anew(store):
    refused = await store.admit(hold("p1", 20.0, limit=15.0, attempt="a1"))
    assert (refused.allowed, refused.reason) == (False, "quota_exceeded")
    assert await store.prompt_owner("p1") is None
    capped = await store.admit(hold("p1", max_active=0, attempt="a2"))
    assert (capped.allowed, capped.reason, capped.replay) == (False, "concurrency_limit", False)
    retried = await store.admit(hold("p1", 10.0, limit=15.0, attempt="a3"))  # not the old refusal replayed
    assert (retried.allowed, retried.replay, retried.held) == (True, False, 10.0)
    assert await store.prompt_owner("p1") == "acme"
    assert [h.prompt_id for h in await store.holds("acme")] == ["p1"]


@contract
async def test_an_operators_claim_and_a_tenants_admission_exclude_each_other(store):
    assert await store.claim_prompt("op", None, NOW)
    assert not await store.claim_prompt("op", "acme", NOW)
    assert await store.prompt_owner("op") == ""
    assert (await store.admit(hold("op", attempt="a1"))).reason == "prompt_id_taken"
    assert await store.holds("acme") == []
    assert (await store.admit(hold("p1", attempt="a1"))).allowed
    assert not await store.claim_prompt("p1", None, NOW)
    assert await store.prompt_owner("p1") == "acme"


@contract
async def test_abandoning_an_admission_frees_its_prompt_id_and_touches_no_other_attempts_hold(store):
    assert (await store.admit(hold("p1", attempt="a1"))).allowed
    assert await store.abandon("acme", "p1", attempt="a2", now=NOW + 1) is None  # a duplicate's failed attempt
    assert await store.abandon("globex", "p1", attempt="a1", now=NOW + 1) is None
    assert [h.prompt_id for h in await store.holds("acme")] == ["p1"]
    assert await store.prompt_owner("p1") == "acme"
    refunded = await store.abandon("acme", "p1", attempt="a1", outcome="rejected", now=NOW + 2)
    assert (refunded.outcome, refunded.actual) == ("rejected", 0.0)
    assert await store.prompt_owner("p1") is None and await store.holds("acme") == []
    again = await store.admit(hold("p1", attempt="a3"))
    assert (again.allowed, again.replay, again.held) == (True, False, 10.0)
    # an attempt abandoned before its admission reached the store: that admission, arriving late, is refused;
    # the client's retry (a new attempt) is decided anew
    assert await store.abandon("acme", "p2", attempt="b1", now=NOW + 3) is None
    late = await store.admit(hold("p2", attempt="b1"))
    assert (late.allowed, late.reason, late.replay) == (False, "abandoned", True)
    assert await store.prompt_owner("p2") is None
    assert (await store.admit(hold("p2", attempt="b2"))).allowed
    assert await store.usage("acme", DAY) == Usage(0.0, 20.0, 2)


def test_concurrent_admissions_of_one_prompt_id_by_two_tenants_admit_exactly_one(backend):
    async def run():
        stores = [backend.open() for _ in range(4)]
        gate = asyncio.Event()

        async def admit(store, request):
            await gate.wait()
            return await store.admit(request)

        try:
            for store in stores:
                await store.ping()
            requests = [hold(f"p{n // 8}", tenant=("acme", "globex")[n % 2], attempt=str(n)) for n in range(32)]
            tasks = [asyncio.create_task(admit(stores[n % 4], r)) for n, r in enumerate(requests)]
            await asyncio.sleep(0)
            gate.set()
            decisions = await asyncio.gather(*tasks)
            owners = [await stores[0].prompt_owner(f"p{k}") for k in range(4)]
            holds = [h.prompt_id for t in ("acme", "globex") for h in await stores[0].holds(t)]
            return requests, decisions, owners, holds
        finally:
            for store in stores:
                await store.close()

    requests, decisions, owners, holds = asyncio.run(run())
    for k in range(4):
        mine = [(r, d) for r, d in zip(requests, decisions, strict=True) if r.prompt_id == f"p{k}"]
        admitted = [r.tenant for r, d in mine if d.allowed]
        assert len(admitted) == 1 and owners[k] == admitted[0]
        assert {d.reason for _, d in mine if not d.allowed} == {"prompt_id_taken"}
    assert sorted(holds) == ["p0", "p1", "p2", "p3"]


@contract
async def test_identity_version_moves_with_every_identity_change_from_any_store_object(store):
    if store.identity_version() is None:
        return  # this backend offers no cheap version: nothing may be cached
    other = SqliteStore(store.path)  # another connection, as another process would have
    try:
        await store.put_tenant(Tenant("acme", "basic"), create=True)
        seen = store.identity_version()
        await store.admit(hold("p1"))
        await store.own_prompt("p2", "acme", NOW)
        assert store.identity_version() == seen  # admission is not an identity change
        changes = [
            lambda s, n: s.put_tenant(Tenant("acme", "basic", ("disabled", "active")[n]), create=False),
            lambda s, n: s.put_account(Account(f"ann{n}", "acme", "member", "h"), create=True),
            lambda s, n: s.put_key(ApiKey(f"k{n}", "acme", "member", "ci", "h", NOW)),
            lambda s, n: s.revoke_key(f"k{n}"),
            lambda s, n: s.revoke_jti(f"j{n}", NOW + 60),
        ]
        for change in changes:
            for n, writer in enumerate((store, other)):
                await change(writer, n)
                version = store.identity_version()
                assert version != seen
                seen = version
    finally:
        await other.close()


# races --------------------------------------------------------------------------------------------------------
async def _race(stores: list, requests: list[ReserveRequest]) -> list:
    """All reserves wait at one gate and are released together, spread over several store objects."""
    gate = asyncio.Event()

    async def reserve(store, request):
        await gate.wait()
        return await store.reserve(request)

    for store in stores:
        await store.ping()
    tasks = [asyncio.create_task(reserve(stores[i % len(stores)], r)) for i, r in enumerate(requests)]
    await asyncio.sleep(0)
    gate.set()
    return await asyncio.gather(*tasks)


def test_concurrent_reserves_at_the_quota_edge_admit_exactly_the_allowance(backend):
    async def run():
        stores = [backend.open() for _ in range(4)]
        try:
            by_quota = await _race(stores, [hold(f"q{n}", 10.0, limit=75.0) for n in range(20)])
            by_cap = await _race(stores, [hold(f"c{n}", 0.0, limit=-1, max_active=12, tenant="beta")
                                          for n in range(20)])
            return by_quota, by_cap, await stores[0].usage("acme", DAY)
        finally:
            for store in stores:
                await store.close()

    by_quota, by_cap, usage = asyncio.run(run())
    assert sum(d.allowed for d in by_quota) == 7
    assert {d.reason for d in by_quota if not d.allowed} == {"quota_exceeded"}
    assert (usage.held, usage.active) == (70.0, 7)
    assert sum(d.allowed for d in by_cap) == 12


def _reserve_from_process(backend: Backend, barrier, results, order: list[int]) -> None:
    async def run():
        stores = [backend.open() for _ in range(3)]
        try:
            for store in stores:
                await store.ping()
            barrier.wait(30)
            decisions = await _race(stores, [hold(f"p{n}", 10.0, limit=75.0) for n in order])
            return {f"p{n}": d.allowed for n, d in zip(order, decisions, strict=True)}
        finally:
            for store in stores:
                await store.close()

    results.put(asyncio.run(run()))


def test_reserves_from_two_processes_admit_exactly_the_allowance(backend):
    """Both processes reserve the same 20 prompts in opposite orders: one decision per prompt, 7 admitted."""
    # fork: a spawned child would import this module as part of the plugin package (and with it torch)
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    ids = list(range(20))
    workers = [context.Process(target=_reserve_from_process, args=(backend, barrier, results, order))
               for order in (ids, ids[::-1])]
    for worker in workers:
        worker.start()
    seen = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    assert seen[0] == seen[1]
    assert sum(seen[0].values()) == 7

    async def usage():
        store = backend.open()
        try:
            return await store.usage("acme", DAY)
        finally:
            await store.close()

    assert asyncio.run(usage()).held == 70.0


# both backends side by side ----------------------------------------------------------------------------------
@pytest.mark.redis
def test_both_backends_return_identical_results_for_one_random_history(tmp_path, redis_server):
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    rng = random.Random(11)
    operations = []
    for n in range(300):
        tenant, now = rng.choice(("acme", "beta")), NOW + n * rng.choice((0.1, 7.0, 400.0))
        kind = rng.choice(("reserve", "reserve", "settle", "rate", "usage"))
        prompt = f"{tenant}-{rng.randrange(30)}"  # prompt ids are unique across tenants (ComfyUI's uuid4)
        if kind == "reserve":
            operations.append(("reserve", hold(prompt, rng.choice((0.5, 9.9, 33.3)), tenant=tenant,
                                               limit=rng.choice((-1, 100.0, 250.0)), max_active=rng.randrange(1, 6),
                                               day=rng.choice((DAY, NEXT_DAY)), deadline=now + 60, now=now)))
        elif kind == "settle":
            operations.append(("settle", (tenant, prompt, rng.choice((0.0, 1.1, 9.9)), "success", now)))
        elif kind == "rate":
            operations.append(("rate", (f"k{rng.randrange(3)}", rng.choice((0.3, 1.7)), rng.randrange(0, 4), now)))
        else:
            operations.append(("usage", (tenant, rng.choice((DAY, NEXT_DAY)))))

    async def replay(store):
        out = []
        try:
            for kind, args in operations:
                if kind == "reserve":
                    out.append(await store.reserve(args))
                elif kind == "settle":
                    out.append(await store.settle(*args[:4], now=args[4]))
                elif kind == "rate":
                    out.append(await store.rate_limit(*args[:3], now=args[3]))
                else:
                    out.append(await store.usage(*args))
            out.append(sorted(await store.holds(), key=lambda r: (r.tenant, r.prompt_id)))
            out.append(sorted(await store.expired_holds(now=NOW + 3000), key=lambda r: (r.tenant, r.prompt_id)))
            for tenant in ("acme", "beta"):
                out.append(await store.ledger(tenant))
        finally:
            await store.close()
        return out

    reference = asyncio.run(replay(SqliteStore(tmp_path / "reference.db")))
    assert asyncio.run(replay(RedisStore(redis_server.url))) == reference


# Redis only: outages and script reloads ------------------------------------------------------------------------
@pytest.mark.redis
def test_redis_outage_raises_store_unavailable_and_the_same_store_recovers(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    store = open_store(server.url, tmp_path)
    assert store.description == f"redis://127.0.0.1:{server.port}/0"

    async def before_outage():
        assert (await store.reserve(hold("p1", 10.0))).allowed

    async def during_outage():
        started = time.monotonic()
        for call in (store.ping(), store.reserve(hold("p2")), store.settle("acme", "p1", 1.0, "success"),
                     store.rate_limit("ip", 1.0, 1), store.get_tenant("acme"), store.holds()):
            with pytest.raises(StoreUnavailable):
                await call
        assert time.monotonic() - started < 5

    async def after_restart():
        usage = await store.usage("acme", DAY)  # the hold survived the restart (AOF)
        assert (usage.held, usage.active) == (10.0, 1)
        assert (await store.settle("acme", "p1", 4.0, "success", now=NOW + 1)).actual == 4.0
        assert (await store.reserve(hold("p2", 10.0))).allowed

    async def scenario():
        nonlocal server
        try:
            await before_outage()
            server.stop()
            await during_outage()
            server = RedisServer(tmp_path / "redis", port=server.port).start()
            await after_restart()
        finally:
            await store.close()
            server.stop()

    asyncio.run(scenario())


@pytest.mark.redis
def test_a_hung_redis_times_out_and_the_same_store_recovers(tmp_path):
    server = RedisServer(tmp_path / "redis").start()

    async def scenario():
        store = RedisStore(server.url, timeout=0.5)
        try:
            assert await store.rate_limit("ip", 10.0, 1, now=NOW) == 0.0
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                for call in (store.rate_limit("ip", 10.0, 1, now=NOW), store.reserve(hold("p1")), store.ping(),
                             store.get_key("k1")):
                    with pytest.raises(StoreUnavailable):
                        await call
                assert time.monotonic() - started < 4 * 0.5 + 1
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            assert await store.rate_limit("ip", 10.0, 1, now=NOW + 1) == 9.0
            assert (await store.reserve(hold("p1"))).allowed
        finally:
            await store.close()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


@pytest.mark.redis
def test_a_url_with_a_password_and_a_database_is_honoured_by_every_call(tmp_path):
    server = RedisServer(tmp_path / "redis", password="s3cret").start()
    url = f"redis://:s3cret@127.0.0.1:{server.port}/3"

    async def scenario():
        store = RedisStore(url)
        wrong = RedisStore(url.replace("s3cret", "wrong"))
        try:
            assert (await store.reserve(hold("p1"))).allowed  # a decision: the store's own connection
            await store.own_prompt("p1", "acme", NOW)  # redis-py's pool
            assert await store.prompt_owner("p1") == "acme"
            with pytest.raises(StoreUnavailable):
                await wrong.reserve(hold("p2"))
        finally:
            await store.close()
            await wrong.close()

    try:
        asyncio.run(scenario())
        with redis.Redis.from_url(url) as client:
            assert client.exists("tn:{acme}:res:p1", "tn:prompt:p1") == 2
        with redis.Redis.from_url(url.replace("/3", "/0")) as client:
            assert client.dbsize() == 0
    finally:
        server.stop()


@pytest.mark.redis
def test_an_error_reply_to_a_command_sent_with_a_script_is_not_swallowed(redis_server):
    """`reserve` indexes a new tenant in the same round trip as its script: an error there must surface."""

    async def scenario():
        store = RedisStore(redis_server.url)
        try:
            assert (await store.reserve(hold("p0"))).allowed  # the script is loaded: its reply will be fine
            await store.redis.set("tn:admission", "not a set")
            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                await store.reserve(hold("p1", tenant="globex"))
        finally:
            await store.close()

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    try:
        asyncio.run(scenario())
    finally:
        with redis.Redis.from_url(redis_server.url) as client:
            client.flushdb()


@pytest.mark.redis
def test_each_connection_indexes_a_tenant_for_the_reaper_once(redis_server):
    """The admission index is written once per tenant and connection; a new connection (perhaps to a restarted
    or failed-over server) writes it again, so the reaper always finds the tenant's holds."""

    async def scenario(client):
        store = RedisStore(redis_server.url)
        try:
            await store.reserve(hold("p0"))
            client.config_resetstat()
            await store.reserve(hold("p1"))
            assert "cmdstat_sadd" not in client.info("commandstats")
            client.delete("tn:admission")  # as if the server behind the next connection had lost it
            await store.lane.close()
            await store.reserve(hold("p2"))
            assert client.smembers("tn:admission") == {b"acme"}
            assert {r.prompt_id for r in await store.expired_holds(now=NOW + 10_000)} == {"p0", "p1", "p2"}
        finally:
            await store.close()

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
        try:
            asyncio.run(scenario(client))
        finally:
            client.flushdb()


@pytest.mark.redis
def test_callers_that_give_up_do_not_disturb_the_replies_of_others(redis_server):
    """Decisions share one connection; a cancelled caller's reply is read and dropped, never handed on."""

    async def scenario():
        store = RedisStore(redis_server.url)
        expected = [float(n + 1) for n in range(60)]  # each key refuses with its own retry-after
        try:
            for n in range(60):
                await store.rate_limit(f"k{n}", float(n + 1), 1, now=NOW)
            calls = [asyncio.create_task(store.rate_limit(f"k{n}", float(n + 1), 1, now=NOW)) for n in range(60)]
            await asyncio.sleep(0)
            for call in calls[::3]:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            assert [call.result() for call in calls if not call.cancelled()] == \
                [e for e, call in zip(expected, calls, strict=True) if not call.cancelled()]
            assert [await store.rate_limit(f"k{n}", float(n + 1), 1, now=NOW) for n in range(60)] == expected
        finally:
            await store.close()

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    asyncio.run(scenario())


@pytest.mark.redis
def test_scripts_are_loaded_again_after_the_server_forgets_them(redis_server):
    async def scenario():
        store = RedisStore(redis_server.url)
        try:
            assert (await store.reserve(hold("p1"))).allowed
            await store.redis.script_flush()
            assert (await store.reserve(hold("p1"))).replay
            await store.redis.script_flush()
            assert await store.settle("acme", "p1", 1.0, "success", now=NOW) is not None
            await store.redis.script_flush()
            assert await store.rate_limit("ip", 1.0, 1, now=NOW) == 0.0
        finally:
            await store.close()

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    asyncio.run(scenario())

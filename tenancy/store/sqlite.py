"""The embedded store: one SQLite file in WAL mode, safe for several ComfyUI processes on one box.

Calls run inline on the event loop: each is one indexed statement on a local file (microseconds), and a
busy timeout bounds the wait when another process holds the write lock.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from ..admission import quota_reason
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
from .protocol import ABANDONED, KEPT_S, Conflict, StoreUnavailable

# The tables, created when missing (admission tables are clustered on their key: see the file)
SCHEMA = Path(__file__).with_name("sqlite_schema.sql").read_text()


class SqliteStore:
    def __init__(self, path: Path, *, other_process_changes_s: float = 0.0, kept_s: float = KEPT_S,
                 timeout_s: float = 1.0) -> None:
        self.path = Path(path)
        self.other_process_changes_s = other_process_changes_s
        self.kept_s = kept_s  # see protocol.KEPT_S
        self.description = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # Fewer, larger checkpoints: each one fsyncs, and fsync is the slow part of a commit here.
            self.db.execute("PRAGMA wal_autocheckpoint=10000")
            self.db.executescript(SCHEMA)
            _add_missing_columns(self.db)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"{self.description}: {exc}") from exc
        self._identity_writes = 0
        self._data_version = (0, -math.inf)  # (PRAGMA data_version, when it was read)

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.description}: {exc}") from exc

    def _one(self, sql: str, args: tuple = ()) -> tuple | None:
        return self._run(sql, args).fetchone()

    @contextmanager
    def _transaction(self):
        """One writer at a time across processes: BEGIN IMMEDIATE takes the write lock up front."""
        self._run("BEGIN IMMEDIATE")
        try:
            yield
            self._run("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def _identity_write(self, sql: str, args: tuple) -> sqlite3.Cursor:
        """A change to who may do what (tenants, accounts, keys, revoked tokens): cached principals are stale."""
        self._identity_writes += 1
        return self._run(sql, args)

    def identity_version(self) -> tuple[int, int]:
        """Our own identity writes count at once. Other processes' commits move `PRAGMA data_version`, which is
        read at most every `other_process_changes_s` seconds: it takes the file's shared-memory locks, and
        measured 45-80 µs per request inside a busy ComfyUI (a third of the guard's cost on /view)."""
        version, read_at = self._data_version
        now = time.monotonic()
        if now - read_at >= self.other_process_changes_s:
            version = self._one("PRAGMA data_version")[0]
            self._data_version = (version, now)
        return self._identity_writes, version

    async def ping(self) -> None:
        self._one("SELECT 1")

    async def close(self) -> None:
        self.db.close()

    # tenants and accounts ------------------------------------------------------------------------
    async def put_tenant(self, tenant: Tenant, *, create: bool) -> None:
        verb = "INSERT" if create else "REPLACE"
        self._identity_write(f"{verb} INTO tenants (id, plan, status, tags) VALUES (?, ?, ?, ?)",
                             (tenant.id, tenant.plan, tenant.status, json.dumps(list(tenant.tags))))

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        row = self._one("SELECT id, plan, status, tags FROM tenants WHERE id = ?", (tenant_id,))
        return _tenant(row) if row else None

    async def list_tenants(self) -> list[Tenant]:
        return [_tenant(r) for r in self._run("SELECT id, plan, status, tags FROM tenants ORDER BY id")]

    async def put_account(self, account: Account, *, create: bool) -> None:
        verb = "INSERT" if create else "REPLACE"
        self._identity_write(f"{verb} INTO accounts (username, tenant, role, password_hash, disabled) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (account.username, account.tenant, account.role, account.password_hash,
                              int(account.disabled)))

    async def get_account(self, username: str) -> Account | None:
        row = self._one("SELECT username, tenant, role, password_hash, disabled FROM accounts WHERE username = ?",
                        (username,))
        return _account(row) if row else None

    async def list_accounts(self, tenant: str | None = None) -> list[Account]:
        sql = "SELECT username, tenant, role, password_hash, disabled FROM accounts"
        rows = self._run(sql + " WHERE tenant = ? ORDER BY username", (tenant,)) if tenant else \
            self._run(sql + " ORDER BY username")
        return [_account(r) for r in rows]

    # API keys ------------------------------------------------------------------------------------
    async def put_key(self, key: ApiKey) -> None:
        self._identity_write("INSERT INTO api_keys (key_id, tenant, role, name, secret_hash, created, expires, "
                             "revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (key.key_id, key.tenant, key.role, key.name, key.secret_hash, key.created, key.expires,
                              int(key.revoked)))

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = self._one(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
        return _key(row) if row else None

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys"
        rows = self._run(sql + " WHERE tenant = ? ORDER BY created", (tenant,)) if tenant else \
            self._run(sql + " ORDER BY created")
        return [_key(r) for r in rows]

    async def revoke_key(self, key_id: str) -> bool:
        return self._identity_write("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", (key_id,)).rowcount > 0

    # refresh tokens --------------------------------------------------------------------------------
    async def put_refresh(self, token: RefreshToken) -> None:
        self._run("INSERT INTO refresh_tokens (token_hash, family, subject, tenant, role, expires, used) "
                  "VALUES (?, ?, ?, ?, ?, ?, 0)",
                  (token.token_hash, token.family, token.subject, token.tenant, token.role, token.expires))

    async def use_refresh(self, token_hash: str, now: float) -> tuple[str, RefreshToken | None]:
        with self._transaction():
            row = self._one("SELECT token_hash, family, subject, tenant, role, expires, used FROM refresh_tokens "
                            "WHERE token_hash = ?", (token_hash,))
            if row is None:
                outcome: tuple[str, RefreshToken | None] = ("invalid", None)
            else:
                token = RefreshToken(*row[:6], used=bool(row[6]))
                revoked = self._one("SELECT 1 FROM revoked_families WHERE family = ?", (token.family,))
                if token.used:
                    self._run("INSERT OR IGNORE INTO revoked_families (family) VALUES (?)", (token.family,))
                    outcome = ("reused", token)
                elif revoked or token.expires < now:
                    outcome = ("invalid", None)
                else:
                    self._run("UPDATE refresh_tokens SET used = 1 WHERE token_hash = ?", (token_hash,))
                    outcome = ("ok", token)
        return outcome

    async def revoke_family(self, family: str) -> None:
        self._run("INSERT OR IGNORE INTO revoked_families (family) VALUES (?)", (family,))

    async def revoke_jti(self, jti: str, expires: float) -> None:
        self._identity_write("INSERT OR IGNORE INTO revoked_jti (jti, expires) VALUES (?, ?)", (jti, expires))

    async def jti_revoked(self, jti: str) -> bool:
        return self._one("SELECT 1 FROM revoked_jti WHERE jti = ?", (jti,)) is not None

    # ownership -------------------------------------------------------------------------------------
    async def own_prompt(self, prompt_id: str, tenant: str | None, now: float) -> None:
        self._run(OWN_PROMPT, (prompt_id, tenant, now))

    async def claim_prompt(self, prompt_id: str, tenant: str | None, now: float) -> bool:
        return self._run(CLAIM_PROMPT, (prompt_id, tenant, now)).rowcount == 1

    async def prompt_owner(self, prompt_id: str) -> str | None:
        row = self._one("SELECT tenant FROM prompts WHERE prompt_id = ?", (prompt_id,))
        return None if row is None else (row[0] or "")

    async def index_output(self, folder: str, subfolder: str, filename: str, tenant: str | None,
                           prompt_id: str) -> None:
        self._run("INSERT OR REPLACE INTO outputs (folder, subfolder, filename, tenant, prompt_id) "
                  "VALUES (?, ?, ?, ?, ?)", (folder, subfolder, filename, tenant, prompt_id))

    async def output_owner(self, folder: str, subfolder: str, filename: str) -> str | None:
        row = self._one("SELECT tenant FROM outputs WHERE folder = ? AND subfolder = ? AND filename = ?",
                        (folder, subfolder, filename))
        return None if row is None else (row[0] or "")

    async def forget_outputs(self, files: list[tuple[str, str, str]]) -> None:
        with self._transaction():
            for file in files:
                self._run("DELETE FROM outputs WHERE folder = ? AND subfolder = ? AND filename = ?", tuple(file))

    async def claim_duty(self, name: str, hold_s: float) -> bool:
        now = time.time()
        return self._run("INSERT INTO duties (name, until) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                         "until = excluded.until WHERE duties.until <= ?", (name, now + hold_s, now)).rowcount == 1


    async def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._transaction():
            self._run("DELETE FROM rate WHERE tat < ?", (now,))
            self._run("DELETE FROM revoked_jti WHERE expires < ?", (now,))
            self._run("DELETE FROM refresh_tokens WHERE expires < ?", (now - self.kept_s,))
            self._run("DELETE FROM prompts WHERE created < ?", (now - self.kept_s,))
            self._run("DELETE FROM reservations WHERE state != 'held' AND deadline < ?", (now - self.kept_s,))

    # admission -----------------------------------------------------------------------------------------
    async def reserve(self, request: ReserveRequest) -> QuotaDecision:
        now = time.time() if request.now is None else request.now
        with self._transaction():
            return self._reserve(request, now)

    async def admit(self, request: ReserveRequest, rate: RateLimit | None = None) -> QuotaDecision:
        now = time.time() if request.now is None else request.now
        with self._transaction():  # one commit for all three: each commit is a write to the WAL on the request path
            if rate is not None:
                wait = self._gcra(rate.key, rate.interval_s, rate.burst, now)
                if wait > 0:
                    return QuotaDecision.rate_limited(wait, request.limit)
            return self._reserve(request, now, claim=True)

    def _reserve(self, r: ReserveRequest, now: float, claim: bool = False) -> QuotaDecision:
        """`claim`: admit's rules (the prompt id is claimed with the hold; only this attempt's decision replays;
        a refusal leaves nothing behind); else reserve's (any earlier decision replays, refusals are kept)."""
        earlier, earlier_reason, earlier_state, earlier_attempt, claimed, used, held, active = \
            self._one(RESERVE_STATE, (r.prompt_id, r.tenant, r.day))
        if earlier is not None and (not claim or earlier_attempt == r.attempt):
            return QuotaDecision(bool(earlier), earlier_reason, used, held, r.limit, active, replay=True)
        if claim and (claimed or earlier_state == "held"):
            return QuotaDecision.taken(r.limit)
        reason = quota_reason(used, held, active, r.seconds, r.limit, r.max_active)
        allowed = reason == "ok"
        if claim and not allowed:
            return QuotaDecision(False, reason, used, held, r.limit, active)
        if claim:  # what an earlier attempt left (its refusal kept by `abandon`, or a week-old settlement) goes
            self._run("DELETE FROM reservations WHERE prompt_id = ?", (r.prompt_id,))
            self._run(CLAIM_PROMPT, (r.prompt_id, r.tenant, now))
        self._run("INSERT INTO reservations (prompt_id, tenant, seconds, day, deadline, instance, state, actual, "
                  "outcome, allowed, reason, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, 0, '', ?, ?, ?)",
                  (r.prompt_id, r.tenant, r.seconds, r.day, r.deadline, r.instance,
                   "held" if allowed else "refused", int(allowed), reason, r.attempt))
        if allowed:
            self._run("INSERT INTO holds (tenant, prompt_id) VALUES (?, ?)", (r.tenant, r.prompt_id))
            self._run("INSERT INTO usage (tenant, day, used, held) VALUES (?, ?, 0, ?) "
                      "ON CONFLICT (tenant, day) DO UPDATE SET held = ROUND(held + excluded.held, 3)",
                      (r.tenant, r.day, r.seconds))
            self._ledger(now, r.tenant, r.prompt_id, "reserve", r.seconds, r.day, "")
            held, active = held + r.seconds, active + 1
        return QuotaDecision(allowed, reason, used, held, r.limit, active)

    async def settle(self, tenant: str, prompt_id: str, actual: float, outcome: str,
                     now: float | None = None) -> Reservation | None:
        now = time.time() if now is None else now
        with self._transaction():
            row = self._one(f"SELECT {_RES_COLUMNS} FROM reservations WHERE prompt_id = ? AND tenant = ? "
                            "AND state = 'held'", (prompt_id, tenant))
            return None if row is None else self._settle(_reservation(row), actual, outcome, now)

    def _settle(self, held: Reservation, actual: float, outcome: str, now: float) -> Reservation:
        tenant, prompt_id = held.tenant, held.prompt_id
        self._run("UPDATE reservations SET state = 'settled', actual = ?, outcome = ? WHERE prompt_id = ?",
                  (actual, outcome, prompt_id))
        self._run("DELETE FROM holds WHERE tenant = ? AND prompt_id = ?", (tenant, prompt_id))
        self._run("UPDATE usage SET held = MAX(0, ROUND(held - ?, 3)), used = ROUND(used + ?, 3) "
                  "WHERE tenant = ? AND day = ?",
                  (held.seconds, actual, tenant, held.day))
        self._ledger(now, tenant, prompt_id, "settle", actual, held.day, outcome)
        return Reservation(held.tenant, prompt_id, held.seconds, held.day, held.deadline, held.instance, "settled",
                           actual, outcome)

    async def abandon(self, tenant: str, prompt_id: str, now: float | None = None, *, attempt: str = "",
                      outcome: str = ABANDONED) -> Reservation | None:
        now = time.time() if now is None else now
        with self._transaction():
            row = self._one(f"SELECT {_RES_COLUMNS}, attempt FROM reservations WHERE prompt_id = ?", (prompt_id,))
            earlier = None if row is None else _reservation(row[:-1])
            if earlier is not None and earlier.tenant == tenant and earlier.state == "held" and row[-1] == attempt:
                self._run("DELETE FROM prompts WHERE prompt_id = ? AND tenant = ?", (prompt_id, tenant))
                return self._settle(earlier, 0.0, outcome, now)
            if earlier is None or (earlier.state != "held" and row[-1] != attempt):
                self._run(REFUSED_FOR_ATTEMPT, (prompt_id, tenant, outcome, attempt))
        return None

    def _ledger(self, now: float, tenant: str, prompt_id: str, kind: str, seconds: float, day: str,
                outcome: str) -> None:
        self._run("INSERT INTO ledger (time, tenant, prompt_id, kind, seconds, day, outcome) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?)", (now, tenant, prompt_id, kind, seconds, day, outcome))

    async def mark_started(self, tenant: str, prompt_id: str, now: float) -> None:
        self._run("UPDATE reservations SET started = ? WHERE prompt_id = ? AND tenant = ? AND state = 'held' "
                  "AND started IS NULL", (now, prompt_id, tenant))

    async def holds(self, tenant: str | None = None) -> list[Reservation]:
        sql = f"SELECT {_RES_COLUMNS} FROM reservations WHERE prompt_id IN (SELECT prompt_id FROM holds"
        rows = self._run(sql + " WHERE tenant = ?)", (tenant,)) if tenant else self._run(sql + ")")
        return [_reservation(r) for r in rows]

    async def expired_holds(self, now: float | None = None) -> list[Reservation]:
        now = time.time() if now is None else now
        return [h for h in await self.holds() if h.deadline < now]

    async def instance_holds(self, instance: str) -> list[Reservation]:
        return [h for h in await self.holds() if h.instance == instance]

    async def usage(self, tenant: str, day: str) -> Usage:
        used, held = self._one("SELECT COALESCE(SUM(used), 0), COALESCE(SUM(held), 0) FROM usage "
                               "WHERE tenant = ? AND day = ?", (tenant, day))
        active = self._one("SELECT COUNT(*) FROM holds WHERE tenant = ?", (tenant,))[0]
        return Usage(used, held, active)

    async def ledger(self, tenant: str | None = None, since: float | None = None) -> list[LedgerEntry]:
        sql = "SELECT time, tenant, prompt_id, kind, seconds, day, outcome FROM ledger WHERE time >= ?"
        args: tuple = (since or 0.0,)
        if tenant:
            sql, args = sql + " AND tenant = ?", (*args, tenant)
        return [LedgerEntry(*row) for row in self._run(sql + " ORDER BY id", args)]

    async def rate_limit(self, key: str, interval_s: float, burst: int, now: float | None = None) -> float:
        with self._transaction():
            return self._gcra(key, interval_s, burst, time.time() if now is None else now)

    def _gcra(self, key: str, interval_s: float, burst: int, now: float) -> float:
        tolerance = interval_s * max(burst - 1, 0)
        row = self._one("SELECT tat FROM rate WHERE key = ?", (key,))
        tat = max(row[0] if row else now, now)
        if tat - now > tolerance:
            return tat - now - tolerance
        self._run("INSERT OR REPLACE INTO rate (key, tat) VALUES (?, ?)", (key, tat + interval_s))
        return 0.0


# What a reservation decides on, in one statement: an earlier decision for the prompt (and its state and attempt),
# whether the prompt id is claimed, usage, held prompts.
RESERVE_STATE = """SELECT (SELECT allowed FROM reservations WHERE prompt_id = ?1),
    (SELECT reason FROM reservations WHERE prompt_id = ?1),
    (SELECT state FROM reservations WHERE prompt_id = ?1),
    (SELECT attempt FROM reservations WHERE prompt_id = ?1),
    EXISTS (SELECT 1 FROM prompts WHERE prompt_id = ?1),
    COALESCE((SELECT SUM(used) FROM usage WHERE tenant = ?2 AND day = ?3), 0),
    COALESCE((SELECT SUM(held) FROM usage WHERE tenant = ?2 AND day = ?3), 0),
    (SELECT COUNT(*) FROM holds WHERE tenant = ?2)"""
OWN_PROMPT = "INSERT OR REPLACE INTO prompts (prompt_id, tenant, created) VALUES (?, ?, ?)"
# what `abandon` keeps for an attempt that reserved nothing: its reserve, arriving late, replays this refusal
REFUSED_FOR_ATTEMPT = ("REPLACE INTO reservations (prompt_id, tenant, seconds, day, deadline, instance, state, actual, "
                       "outcome, allowed, reason, attempt) VALUES (?, ?, 0, '', 0, '', 'refused', 0, '', 0, ?, ?)")
CLAIM_PROMPT = "INSERT INTO prompts (prompt_id, tenant, created) VALUES (?, ?, ?) ON CONFLICT (prompt_id) DO NOTHING"
_RES_COLUMNS = "tenant, prompt_id, seconds, day, deadline, instance, state, actual, outcome, started"
_KEY_COLUMNS = "key_id, tenant, role, name, secret_hash, created, expires, revoked"


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Columns added after a store file was created (CREATE TABLE IF NOT EXISTS leaves old tables as they are)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(reservations)")}
    if "started" not in columns:
        db.execute("ALTER TABLE reservations ADD COLUMN started REAL")
    if "attempt" not in columns:
        db.execute("ALTER TABLE reservations ADD COLUMN attempt TEXT NOT NULL DEFAULT ''")


def _reservation(row: tuple) -> Reservation:
    return Reservation(*row)


def _tenant(row: tuple) -> Tenant:
    return Tenant(id=row[0], plan=row[1], status=row[2], tags=tuple(json.loads(row[3])))


def _account(row: tuple) -> Account:
    return Account(username=row[0], tenant=row[1], role=row[2], password_hash=row[3], disabled=bool(row[4]))


def _key(row: tuple) -> ApiKey:
    return ApiKey(*row[:7], revoked=bool(row[7]))

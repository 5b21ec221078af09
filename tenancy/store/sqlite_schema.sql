-- The embedded store's tables (tenancy/store/sqlite.py), created when missing.
-- Admission tables are clustered on their key (WITHOUT ROWID) and carry as few indexes as the queries need:
-- every page a decision touches is one more WAL frame written on the request path.
CREATE TABLE IF NOT EXISTS tenants (id TEXT PRIMARY KEY, plan TEXT NOT NULL, status TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]') WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (username TEXT PRIMARY KEY, tenant TEXT, role TEXT NOT NULL,
    password_hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, tenant TEXT, role TEXT NOT NULL, name TEXT NOT NULL,
    secret_hash TEXT NOT NULL, created REAL NOT NULL, expires REAL, revoked INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refresh_tokens (token_hash TEXT PRIMARY KEY, family TEXT NOT NULL,
    subject TEXT NOT NULL, tenant TEXT, role TEXT NOT NULL, expires REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revoked_families (family TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revoked_jti (jti TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS prompts (prompt_id TEXT PRIMARY KEY, tenant TEXT, created REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations (prompt_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, seconds REAL NOT NULL,
    day TEXT NOT NULL, deadline REAL NOT NULL, instance TEXT NOT NULL, state TEXT NOT NULL, actual REAL NOT NULL,
    outcome TEXT NOT NULL, allowed INTEGER NOT NULL, reason TEXT NOT NULL, started REAL,
    attempt TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (tenant TEXT NOT NULL, prompt_id TEXT NOT NULL, PRIMARY KEY (tenant, prompt_id))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage (tenant TEXT NOT NULL, day TEXT NOT NULL, used REAL NOT NULL DEFAULT 0,
    held REAL NOT NULL DEFAULT 0, PRIMARY KEY (tenant, day)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, time REAL NOT NULL, tenant TEXT NOT NULL,
    prompt_id TEXT NOT NULL, kind TEXT NOT NULL, seconds REAL NOT NULL, day TEXT NOT NULL, outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rate (key TEXT PRIMARY KEY, tat REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outputs (folder TEXT NOT NULL, subfolder TEXT NOT NULL, filename TEXT NOT NULL,
    tenant TEXT, prompt_id TEXT NOT NULL, PRIMARY KEY (folder, subfolder, filename)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS duties (name TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;

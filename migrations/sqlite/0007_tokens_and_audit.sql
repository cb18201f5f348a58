-- leadrelay schema 0007, SQLite dialect (the PostgreSQL twin is migrations/postgres/0007_tokens_and_audit.sql):
-- bearer tokens of the HTTP API, and the append-only audit log.

-- A token is stored only as the SHA-256 of its text (src/app/auth.rs says why that suffices).
-- A revoked token stays, so its name still explains the audit rows it left; a name is unique
-- among the tokens not revoked.
CREATE TABLE api_tokens (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,          -- who holds it, e.g. "cixi console"
    scope       TEXT    NOT NULL,          -- admin, ops or court:{court_id}
    token_hash  TEXT    NOT NULL UNIQUE,   -- SHA-256 of the token, lower-case hex
    created_at  INTEGER NOT NULL,          -- ms since the epoch
    revoked_at  INTEGER                    -- ms since the epoch; NULL = valid
) STRICT;
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Who read or changed which target or task, when, and with what result. Rows are only ever
-- inserted: the triggers below refuse every UPDATE, and every DELETE of a row younger than
-- the retention in audit_settings (none by default: no row may be deleted).
CREATE TABLE audit_log (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, -- order of writing; the pagination key
    at         INTEGER NOT NULL,                           -- ms since the epoch
    actor      TEXT    NOT NULL,                           -- token name, or mqtt:{court_id}
    scope      TEXT    NOT NULL,                           -- the token's scope, or court:{court_id} for MQTT
    action     TEXT    NOT NULL,                           -- e.g. target.get, task.status
    target_id  TEXT,
    task_id    TEXT,
    result     TEXT    NOT NULL CHECK (result IN ('ok', 'refused', 'error')),
    purpose    TEXT,                                       -- the purpose= a look-up gave
    detail     TEXT                                        -- a refusal's reason, a batch's size
) STRICT;
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_target ON audit_log (target_id, id) WHERE target_id IS NOT NULL;
CREATE INDEX audit_log_task ON audit_log (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);

-- The one retention hook: audit rows older than retention_days may be deleted (a purge an
-- operator runs); NULL keeps everything. At least 30 days.
CREATE TABLE audit_settings (
    id             INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    retention_days INTEGER CHECK (retention_days >= 30)
) STRICT;
INSERT INTO audit_settings (id, retention_days) VALUES (1, NULL);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be updated');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN NOT EXISTS (
    SELECT 1 FROM audit_settings
    WHERE id = 1 AND retention_days IS NOT NULL
      AND OLD.at < CAST(strftime('%s', 'now') AS INTEGER) * 1000 - retention_days * 86400000
)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: only rows older than the retention may be deleted');
END;

CREATE TRIGGER audit_settings_no_delete BEFORE DELETE ON audit_settings
BEGIN
    SELECT RAISE(ABORT, 'audit_settings keeps its one row');
END;

-- leadrelay schema 0007, PostgreSQL dialect (the SQLite twin is migrations/sqlite/0007_tokens_and_audit.sql):
-- bearer tokens of the HTTP API, and the append-only audit log.

-- A token is stored only as the SHA-256 of its text (src/app/auth.rs says why that suffices).
-- A revoked token stays, so its name still explains the audit rows it left; a name is unique
-- among the tokens not revoked.
CREATE TABLE api_tokens (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT   NOT NULL,         -- who holds it, e.g. "cixi console"
    scope       TEXT   NOT NULL,         -- admin, ops or court:{court_id}
    token_hash  TEXT   NOT NULL UNIQUE,  -- SHA-256 of the token, lower-case hex
    created_at  BIGINT NOT NULL,         -- ms since the epoch
    revoked_at  BIGINT                   -- ms since the epoch; NULL = valid
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Who read or changed which target or task, when, and with what result. Rows are only ever
-- inserted: the triggers below refuse every UPDATE and TRUNCATE, and every DELETE of a row
-- younger than the retention in audit_settings (none by default: no row may be deleted).
CREATE TABLE audit_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- order of writing; the pagination key
    at         BIGINT NOT NULL,  -- ms since the epoch
    actor      TEXT   NOT NULL,  -- token name, or mqtt:{court_id}
    scope      TEXT   NOT NULL,  -- the token's scope, or court:{court_id} for MQTT
    action     TEXT   NOT NULL,  -- e.g. target.get, task.status
    target_id  TEXT,
    task_id    TEXT,
    result     TEXT   NOT NULL CHECK (result IN ('ok', 'refused', 'error')),
    purpose    TEXT,             -- the purpose= a look-up gave
    detail     TEXT              -- a refusal's reason, a batch's size
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_target ON audit_log (target_id, id) WHERE target_id IS NOT NULL;
CREATE INDEX audit_log_task ON audit_log (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);

-- The one retention hook: audit rows older than retention_days may be deleted (a purge an
-- operator runs); NULL keeps everything. At least 30 days.
CREATE TABLE audit_settings (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    retention_days INTEGER CHECK (retention_days >= 30)
);
INSERT INTO audit_settings (id, retention_days) VALUES (1, NULL);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION audit_log_guard_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keep_days INTEGER;
BEGIN
    SELECT retention_days INTO keep_days FROM audit_settings WHERE id = 1;
    IF keep_days IS NULL
       OR OLD.at >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT - keep_days::BIGINT * 86400000 THEN
        RAISE EXCEPTION 'audit_log is append-only: only rows older than the retention may be deleted'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard_delete();
CREATE TRIGGER audit_settings_no_delete BEFORE DELETE OR TRUNCATE ON audit_settings
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- leadrelay schema 0008, PostgreSQL dialect (the SQLite twin is migrations/sqlite/0008_event_log.sql):
-- the event log that the console's live stream (GET /api/v1/events) reads.

-- One row per published task, update, alert or escalation, written in the transaction of the
-- outbox row that carries the same message, so the stream and the broker are told the same
-- things. Dead letters are not logged: they are addressed to no court. Rows older than
-- --event-retention are deleted by housekeeping.
CREATE TABLE event_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- the stream's event id; order of writing
    kind        TEXT   NOT NULL CHECK (kind IN ('task', 'update', 'alert', 'escalation')),
    court       TEXT   NOT NULL,  -- the court the message's topic is addressed to
    topic       TEXT   NOT NULL,  -- the MQTT topic it is published on
    payload     BYTEA  NOT NULL,  -- the MQTT message's payload, byte for byte (JSON)
    created_at  BIGINT NOT NULL   -- ms since the epoch
);
CREATE INDEX event_log_court ON event_log (court, id);
CREATE INDEX event_log_created ON event_log (created_at);

-- leadrelay schema 0006, PostgreSQL dialect (the SQLite twin is migrations/sqlite/0006_outbox_rejected.sql):
-- outbox messages the MQTT client can never send (larger than --max-packet-size) are moved
-- here instead of being retried forever (see src/mqtt/publisher.rs), so an operator can see
-- and repair them. A message is recorded here first, then removed from the outbox.
CREATE TABLE outbox_rejected (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- order of rejection
    message_id  BIGINT NOT NULL, -- the message's outbox id (row id * 65536 + place)
    kind        TEXT   NOT NULL, -- task, update, alert, escalation or dead_letter
    task_id     TEXT,            -- the task it is about; NULL = none
    topic       TEXT   NOT NULL, -- full MQTT topic, prefix included
    payload     BYTEA  NOT NULL, -- message body (JSON), whole
    created_at  BIGINT NOT NULL, -- when it was written to the outbox (ms since the epoch)
    rejected_at BIGINT NOT NULL, -- when it was set aside (ms since the epoch)
    reason      TEXT   NOT NULL  -- why it cannot be sent, e.g. its size and the limit
);

-- leadrelay schema 0005, PostgreSQL dialect (the SQLite twin is migrations/sqlite/0005_outbox_message_kinds.sql):
-- each framed message also records its kind (task, update, alert, escalation, dead letter) and
-- the task it is about, so a message re-read after a crash says what it is without its topic
-- being parsed (see src/store/outbox.rs). Rows written before keep their framing: frame_version
-- NULL, each message framed as topic and payload.
ALTER TABLE outbox ADD COLUMN frame_version BIGINT;                -- 2 = kind, task id, topic, payload per message; NULL = topic, payload (before 0005)

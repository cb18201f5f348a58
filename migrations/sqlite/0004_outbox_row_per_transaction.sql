-- leadrelay schema 0004, SQLite dialect (the PostgreSQL twin is migrations/postgres/0004_outbox_row_per_transaction.sql):
-- one outbox row per transaction. A group commit of 2,000 new tasks wrote 4,000 outbox rows;
-- now it writes one, whose payload holds the messages framed one after another (see
-- src/store/outbox.rs). Rows written before this migration keep their meaning: frames NULL,
-- one message in topic and payload. A framed row has topic '' (each message carries its own).
ALTER TABLE outbox ADD COLUMN frames INTEGER;                       -- messages framed in payload; NULL = one message, as before 0004
ALTER TABLE outbox ADD COLUMN acked BLOB;                           -- bitmap of the places the broker acknowledged (bit place % 8 of byte place / 8); NULL = none
ALTER TABLE outbox ADD COLUMN acked_count INTEGER NOT NULL DEFAULT 0; -- bits set in acked, for the pending gauge

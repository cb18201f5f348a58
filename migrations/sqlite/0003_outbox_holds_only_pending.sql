-- The outbox holds only messages still to publish: a message is deleted when the broker
-- acknowledges it, rather than marked sent and kept. Before, sent rows were never purged, and
-- marking one rewrote the row and its entry in the partial index of pending rows; that index
-- is no longer needed (pending = every row, in id order).
DELETE FROM outbox WHERE sent_at IS NOT NULL;
DROP INDEX outbox_pending;
ALTER TABLE outbox DROP COLUMN sent_at;

-- leadrelay schema 0002, SQLite dialect (the PostgreSQL twin is migrations/postgres/0002_workflow.sql):
-- the enforcement workflow. Border dwell before a task moves, escalation timers that fire once
-- across replicas, the court behind each history row, and consolidation proposals.
-- Times are INTEGER milliseconds since the Unix epoch, UTC, as in 0001.
--
-- Meaning of 0001 columns from here on:
--   tasks.dispatched_at  when the task was last dispatched: created, reassigned or rerouted
--                        (the history keeps the creation time);
--   tasks.escalated_at   when the task was last escalated, by a timer (either kind) or after
--                        every court rejected it; informational, the claims use the columns below.

-- Border jitter: the court a newer sighting places the target in, when it is not the holder's.
ALTER TABLE tasks ADD COLUMN candidate_court_id TEXT;      -- court of the latest sightings when they differ from assisting_court_id; NULL = none
ALTER TABLE tasks ADD COLUMN candidate_since INTEGER;      -- when the target was first seen in candidate_court_id without a sighting back in the holder's area
-- Escalation timers: set once by the replica that claims the escalation (WHERE ... IS NULL).
ALTER TABLE tasks ADD COLUMN ack_escalated_at INTEGER;     -- when 'not acknowledged by ack_by' fired; NULL = not yet; cleared on reassignment/reroute
ALTER TABLE tasks ADD COLUMN resolve_escalated_at INTEGER; -- when 'not resolved by resolve_by' fired; NULL = not yet; cleared on reassignment/reroute

-- Unclaimed deadlines, for escalate_due and next_deadline (predicates as in the queries).
CREATE INDEX tasks_ack_due ON tasks (ack_by)
    WHERE status = 'dispatched' AND ack_escalated_at IS NULL;
CREATE INDEX tasks_resolve_due ON tasks (resolve_by)
    WHERE status IN ('dispatched', 'acknowledged', 'en_route') AND resolve_escalated_at IS NULL;
-- A target's most recently closed task (not_found cooldown).
CREATE INDEX tasks_target_resolved ON tasks (target_id, resolved_at) WHERE resolved_at IS NOT NULL;

-- The court a history row concerns: the task's assisting court at that moment (for a status
-- report, the court that reported it; for reassigned/rerouted, the new court).
ALTER TABLE task_events ADD COLUMN court_id TEXT; -- assisting court when the event happened; backfilled below for rows written before 0002
-- Before 0002 a task never changed courts, so its current assisting court is the right one.
UPDATE task_events
   SET court_id = (SELECT assisting_court_id FROM tasks WHERE tasks.task_id = task_events.task_id)
 WHERE court_id IS NULL;

-- Consolidation of related cases: one proposal per link, whichever replica finds it first.
CREATE TABLE consolidation_proposals (
    link_key            TEXT    NOT NULL PRIMARY KEY, -- what links the targets: 'plate:<plate>' or 'person:<id>' (caller's key)
    target_ids          TEXT    NOT NULL,             -- JSON array of the linked target ids
    court_ids           TEXT    NOT NULL,             -- JSON array of the courts whose cases are linked
    lead_court_id       TEXT,                         -- the proposed lead court; NULL = none proposed
    supervisor_court_id TEXT,                         -- the supervising court the proposal went to; NULL = none known (no alert sent)
    proposed_at         INTEGER NOT NULL              -- when the link was first found
) STRICT;

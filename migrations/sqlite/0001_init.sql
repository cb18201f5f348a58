-- leadrelay schema, SQLite dialect (the PostgreSQL twin is migrations/postgres/0001_init.sql).
-- Every time is INTEGER milliseconds since the Unix epoch, UTC. Nested values are JSON text.
-- Names of enums are the contract's snake_case wire names.

-- Flagged vehicles and persons with their cases.
CREATE TABLE targets (
    target_id       TEXT    NOT NULL PRIMARY KEY, -- the case system's id, e.g. 'T-2024-0001'
    kind            TEXT    NOT NULL,             -- 'vehicle' | 'person'
    plate           TEXT,                         -- normalised plate, e.g. '浙B12345'; set for vehicles
    person_id       TEXT,                         -- 18-character identity number; set for persons
    name            TEXT,                         -- display name, optional
    status          TEXT    NOT NULL,             -- 'active' | 'seized' | 'withdrawn'; only active targets get tasks
    lead_court_id   TEXT,                         -- lead court after consolidation; otherwise derived from cases
    cases           TEXT    NOT NULL,             -- JSON array of cases {case_no, court_id, filed_on, amount_cny}
    known_locations TEXT    NOT NULL,             -- JSON array of {label, lat, lon, datum}
    valid_until     INTEGER,                      -- after this instant the target no longer matches; NULL = no expiry
    created_at      INTEGER NOT NULL,             -- first stored
    updated_at      INTEGER NOT NULL              -- last change of any field; replicas refresh their hotlists from it
) STRICT;
CREATE INDEX targets_plate ON targets (plate) WHERE plate IS NOT NULL;
CREATE INDEX targets_person_id ON targets (person_id) WHERE person_id IS NOT NULL;
CREATE INDEX targets_updated_at ON targets (updated_at);

-- Assistance tasks sent to command centers.
CREATE TABLE tasks (
    task_id             TEXT    NOT NULL PRIMARY KEY,                -- UUID v7 text
    target_id           TEXT    NOT NULL REFERENCES targets (target_id), -- the target the task is about
    kind                TEXT    NOT NULL,                            -- 'vehicle_seizure' | 'person_locate' | 'person_search'
    status              TEXT    NOT NULL,                            -- task status; open = dispatched, acknowledged, en_route
    requesting_court_id TEXT    NOT NULL,                            -- the court whose cases ask for the task
    assisting_court_id  TEXT    NOT NULL,                            -- the court whose command center acts; only it may report status
    routing             TEXT    NOT NULL,                            -- 'own_jurisdiction' | 'in_jurisdiction' | 'nearest_court'
    distance_km         REAL    NOT NULL,                            -- assisting command center to the sighting, great circle
    plate               TEXT,                                        -- the target's plate when the task was created
    person_id           TEXT,                                        -- the target's identity number when the task was created
    cases               TEXT    NOT NULL,                            -- JSON array: the target's cases when the task was created
    sighting            TEXT,                                        -- JSON {event_id, source, lat, lon, observed_at}; NULL for person_search
    read_plate          TEXT,                                        -- the plate as the camera read it, when it differs
    fuzzy               INTEGER NOT NULL,                            -- 1 when the plate matched only up to OCR confusions
    substitutions       INTEGER NOT NULL,                            -- how many characters the fuzzy match substituted
    dispatched_at       INTEGER NOT NULL,                            -- when the task was created
    ack_by              INTEGER NOT NULL,                            -- acknowledgement deadline (escalation timer)
    resolve_by          INTEGER NOT NULL,                            -- resolution deadline
    acknowledged_at     INTEGER,                                     -- first move out of dispatched
    resolved_at         INTEGER,                                     -- when the task reached a closed status
    escalated_at        INTEGER,                                     -- when a timer escalated the task; claimed with WHERE escalated_at IS NULL
    updated_at          INTEGER NOT NULL                             -- last change of the row
) STRICT;
-- One open task per target, across every replica.
CREATE UNIQUE INDEX tasks_one_open_per_target ON tasks (target_id)
    WHERE status IN ('dispatched', 'acknowledged', 'en_route');
CREATE INDEX tasks_assisting_status ON tasks (assisting_court_id, status);
CREATE INDEX tasks_requesting ON tasks (requesting_court_id);

-- What happened to each task, oldest first.
CREATE TABLE task_events (
    id          INTEGER NOT NULL PRIMARY KEY,                 -- insertion order
    task_id     TEXT    NOT NULL REFERENCES tasks (task_id),  -- the task
    occurred_at INTEGER NOT NULL,                             -- when it happened (a status report's own time if given)
    kind        TEXT    NOT NULL,                             -- 'created' | 'sighting' | 'status'
    status      TEXT    NOT NULL,                             -- the task's status after the event
    actor       TEXT,                                         -- who reported a status change
    note        TEXT,                                         -- the reporter's note
    sighting    TEXT                                          -- JSON: the matched sighting, for 'created' and 'sighting'
) STRICT;
CREATE INDEX task_events_task ON task_events (task_id, id);

-- Sightings already handled, so a redelivered (source, event_id) has one effect.
CREATE TABLE processed_events (
    source       TEXT    NOT NULL, -- the feed, as in sightings/{source}
    event_id     TEXT    NOT NULL, -- unique per source
    processed_at INTEGER NOT NULL, -- when it was recorded; rows older than the retention are purged
    PRIMARY KEY (source, event_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- Messages written with the change they announce, published until the broker has them.
CREATE TABLE outbox (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, -- publication order; never reused
    topic      TEXT    NOT NULL,                           -- full MQTT topic, prefix included
    payload    BLOB    NOT NULL,                           -- message body (JSON)
    created_at INTEGER NOT NULL,                           -- when it was written
    sent_at    INTEGER                                     -- when the broker acknowledged it; NULL = pending
) STRICT;
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;

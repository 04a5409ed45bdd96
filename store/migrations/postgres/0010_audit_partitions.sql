-- Audit events, partitioned by day (issue 17). Retention drops a whole day's partition instead
-- of deleting its rows one by one, and each day's indexes stay small enough to be cached while
-- the history grows to tens of millions of rows. Day partitions (`audit_events_dYYYYMMDD`,
-- `at` in [day start, next day start) in epoch seconds, UTC) are made ahead of time by the
-- store at start and by the housekeeping pass; a row whose day has no partition yet lands in
-- `audit_events_default` and is moved into its day's partition when that is made, so no row
-- is ever refused.
--
-- A partitioned table's unique keys must contain the partition key: the primary key becomes
-- (id, at). Ids stay unique by construction (a per-process random prefix and a counter), and
-- a journal replay re-inserts an event with the same id and the same `at`, which the key
-- still refuses.
ALTER TABLE audit_events RENAME TO audit_events_unpartitioned;
ALTER INDEX audit_events_at RENAME TO audit_events_unpartitioned_at;
ALTER INDEX audit_events_session RENAME TO audit_events_unpartitioned_session;
ALTER TABLE audit_events_unpartitioned RENAME CONSTRAINT audit_events_pkey TO audit_events_unpartitioned_pkey;

CREATE TABLE audit_events (
    LIKE audit_events_unpartitioned INCLUDING DEFAULTS,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_session ON audit_events (session_id);
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- The history so far goes to the default partition; retention deletes it from there as before.
INSERT INTO audit_events SELECT * FROM audit_events_unpartitioned;
DROP TABLE audit_events_unpartitioned;

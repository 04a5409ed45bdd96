-- Decision replay (taxgate policy replay, the widening gate): each downstream decision keeps
-- the hash of the entity slice it saw and its extra context values (`now` is `at`); the slice
-- itself is stored once per distinct content in audit_slices.
CREATE TABLE audit_slices (
    hash       TEXT PRIMARY KEY NOT NULL,
    slice      TEXT NOT NULL,
    first_seen INTEGER NOT NULL
);
CREATE INDEX audit_slices_first_seen ON audit_slices (first_seen);
ALTER TABLE audit_events ADD COLUMN slice_hash TEXT;
ALTER TABLE audit_events ADD COLUMN context TEXT;
-- Retention deletes slices no event refers to any more.
CREATE INDEX audit_events_slice ON audit_events (slice_hash);

-- Retention finds the entity slices no kept decision uses by when each was last used, instead
-- of through an index on audit_events.slice_hash that every proxied request had to update
-- (with many sessions, at a random place). Existing slices start from their newest decision.
ALTER TABLE audit_slices ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
UPDATE audit_slices SET last_seen = COALESCE(
    (SELECT MAX(e.at) FROM audit_events e WHERE e.slice_hash = audit_slices.hash), first_seen);
DROP INDEX audit_events_slice;
DROP INDEX audit_slices_first_seen;
CREATE INDEX audit_slices_last_seen ON audit_slices (last_seen);

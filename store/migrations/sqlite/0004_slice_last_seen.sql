-- Retention finds the entity slices no kept decision uses by when each was last used, instead
-- of through an index on audit_events.slice_hash that every proxied request had to update
-- (with many sessions, at a random place). Existing slices start from their newest decision.
ALTER TABLE audit_slices ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
-- One pass over the events, grouped (the slice_hash index is still there for it).
UPDATE audit_slices SET last_seen = m.newest
FROM (SELECT slice_hash, MAX(at) AS newest FROM audit_events
      WHERE slice_hash IS NOT NULL GROUP BY slice_hash) AS m
WHERE m.slice_hash = audit_slices.hash;
UPDATE audit_slices SET last_seen = first_seen WHERE last_seen < first_seen;
DROP INDEX audit_events_slice;
DROP INDEX audit_slices_first_seen;
CREATE INDEX audit_slices_last_seen ON audit_slices (last_seen);

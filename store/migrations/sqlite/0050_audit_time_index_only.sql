-- Issue 17: with many live sessions every audit batch inserted its rows all over this index
-- (random session ids), writing and checkpointing one page per row: about two thirds of the
-- audit writer's cost per event at 100 sessions (benches/README.md, audit writes). Nothing in
-- the gateway reads audit_events by session; an investigator's query by session scans a time
-- range through audit_events_at (or can create this index on a copy of the database).
DROP INDEX IF EXISTS audit_events_session;

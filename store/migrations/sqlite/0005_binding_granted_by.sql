-- The binding (id) whose holder made this one through personnel management, if any. A pending
-- grant (not yet confirmed by its person) dies with the binding that made it: revoking that
-- binding revokes it in the same transaction, and it cannot be confirmed once that binding is
-- no longer live. NULL for imports, applications and bindings made before this migration.
ALTER TABLE bindings ADD COLUMN granted_by TEXT;
CREATE INDEX bindings_granted_by ON bindings (granted_by) WHERE revoked_at IS NULL;

-- Step-up and the person's sessions (issue 19, CONTRACT sections 10 and 11).
--
-- factor_at: when the session's latest second factor completed (its login, then each step-up);
-- face_at: its latest face verification, 0 when none. Sessions from before this migration count
-- their login as their factor.
ALTER TABLE sessions ADD COLUMN factor_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN face_at BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET factor_at = created_at,
    face_at = CASE WHEN factor = 'face' THEN created_at ELSE 0 END;

-- The device a session logged in from, for the person's session list (安全中心): the user agent
-- as sent (truncated), its family (browser and platform) and the client network (an IPv4 /24
-- or an IPv6 /64), never the full address.
ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN ua_family TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN client_net TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_enterprise ON sessions (enterprise);

-- A step-up challenge belongs to the session that asked for it; NULL for every other purpose.
ALTER TABLE challenges ADD COLUMN session_id TEXT;

-- The devices (user-agent family and client network) each person logged in from, with the last
-- time: a login from one not seen for 90 days sends a login_notice. Sessions are deleted when they
-- expire, so this outlives them.
CREATE TABLE person_devices (
    person       TEXT NOT NULL REFERENCES persons (id_number) ON DELETE CASCADE,
    ua_family    TEXT NOT NULL,
    client_net   TEXT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (person, ua_family, client_net)
);

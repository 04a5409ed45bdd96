-- Limits that hold under concurrency (issue 21) and a lockout that reveals nothing (issue 15).
--
-- A password check is reserved before it runs and settled after: login_in_flight counts the
-- checks under way, and is forgotten once login_reserved_until has passed, so the reservations
-- of an instance that died mid-check expire instead of locking the account for good.
-- failures_since is the time of the first failure counted: failures count while they fall
-- within lockout_secs of it (counts from before this migration restart at the next failure).
ALTER TABLE persons ADD COLUMN login_in_flight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE persons ADD COLUMN login_reserved_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE persons ADD COLUMN failures_since INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enterprises ADD COLUMN login_in_flight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enterprises ADD COLUMN login_reserved_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enterprises ADD COLUMN failures_since INTEGER NOT NULL DEFAULT 0;

-- Failures against account strings that name nobody (normalised: "id:…", "phone:…", "user:…"),
-- so an unknown account locks exactly like a known one.
CREATE TABLE login_guards (
    account              TEXT PRIMARY KEY NOT NULL,
    failed_logins        INTEGER NOT NULL DEFAULT 0,
    locked_until         INTEGER,
    login_in_flight      INTEGER NOT NULL DEFAULT 0,
    login_reserved_until INTEGER NOT NULL DEFAULT 0,
    failures_since       INTEGER NOT NULL DEFAULT 0,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX login_guards_updated_at ON login_guards (updated_at);

-- Fixed-window budgets (failed logins per address, codes per person, per address, in all),
-- taken one unit at a time by a conditional upsert.
CREATE TABLE rate_budgets (
    bucket       TEXT PRIMARY KEY NOT NULL,
    window_start INTEGER NOT NULL,
    used         INTEGER NOT NULL
);
CREATE INDEX rate_budgets_window_start ON rate_budgets (window_start);

-- The SMS log says whom and from where, for the per-person and per-address limits.
ALTER TABLE sms_log ADD COLUMN person TEXT;
ALTER TABLE sms_log ADD COLUMN client_addr TEXT;

-- A lock or a password change voids the person's open challenges.
CREATE INDEX challenges_person ON challenges (person);

-- Usernames are looked up case-insensitively.
CREATE INDEX persons_username_lower ON persons (lower(username));
-- Usernames that differ only in case: such a login matches only the exact spelling until an
-- operator renames one (`SELECT * FROM username_clashes`; `taxgate migrate` warns).
CREATE VIEW username_clashes AS
    SELECT lower(username) AS username, COUNT(*) AS persons
    FROM persons WHERE username IS NOT NULL
    GROUP BY lower(username) HAVING COUNT(*) > 1;

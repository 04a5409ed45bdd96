-- taxgate store, SQLite. Append-only: never edit a released migration, add a new file.
-- Times are unix seconds (INTEGER); lists are JSON text.

CREATE TABLE persons (
    id_number            TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    username             TEXT,
    phone                TEXT,
    password_hash        TEXT NOT NULL,
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins        INTEGER NOT NULL DEFAULT 0,
    locked_until         INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
-- 一号一人: one holder per number.
CREATE UNIQUE INDEX persons_phone ON persons (phone);
CREATE UNIQUE INDEX persons_username ON persons (username);

CREATE TABLE enterprises (
    taxpayer_id          TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    is_agency            BOOLEAN NOT NULL DEFAULT FALSE,
    legacy_password_hash TEXT,
    phone                TEXT,
    failed_logins        INTEGER NOT NULL DEFAULT 0,
    locked_until         INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE bindings (
    id                   TEXT PRIMARY KEY NOT NULL,
    person               TEXT NOT NULL REFERENCES persons (id_number) ON DELETE CASCADE,
    enterprise           TEXT NOT NULL REFERENCES enterprises (taxpayer_id) ON DELETE CASCADE,
    role                 TEXT NOT NULL,
    permissions          TEXT,
    valid_from           INTEGER NOT NULL,
    valid_until          INTEGER,
    enterprise_confirmed BOOLEAN NOT NULL,
    person_confirmed     BOOLEAN NOT NULL,
    revoked_at           INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    updated_by           TEXT NOT NULL
);
CREATE INDEX bindings_person ON bindings (person);
CREATE INDEX bindings_enterprise ON bindings (enterprise);
CREATE UNIQUE INDEX bindings_active_unique ON bindings (person, enterprise, role)
    WHERE revoked_at IS NULL;

CREATE TABLE agency_agreements (
    id               TEXT PRIMARY KEY NOT NULL,
    agency           TEXT NOT NULL REFERENCES enterprises (taxpayer_id) ON DELETE CASCADE,
    client           TEXT NOT NULL REFERENCES enterprises (taxpayer_id) ON DELETE CASCADE,
    scope            TEXT NOT NULL,
    valid_from       INTEGER NOT NULL,
    valid_until      INTEGER,
    client_confirmed BOOLEAN NOT NULL,
    revoked_at       INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX agency_agreements_active_unique ON agency_agreements (agency, client)
    WHERE revoked_at IS NULL;
CREATE INDEX agency_agreements_client ON agency_agreements (client);

CREATE TABLE agreement_staff (
    agreement_id TEXT NOT NULL REFERENCES agency_agreements (id) ON DELETE CASCADE,
    person       TEXT NOT NULL REFERENCES persons (id_number) ON DELETE CASCADE,
    PRIMARY KEY (agreement_id, person)
);
CREATE INDEX agreement_staff_person ON agreement_staff (person);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY NOT NULL,
    token_hash   TEXT NOT NULL,
    entry        TEXT NOT NULL,
    person       TEXT REFERENCES persons (id_number) ON DELETE CASCADE,
    enterprise   TEXT,
    agency       TEXT,
    role         TEXT,
    binding_id   TEXT,
    agreement_id TEXT,
    factor       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE UNIQUE INDEX sessions_token_hash ON sessions (token_hash);
CREATE INDEX sessions_person ON sessions (person);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE challenges (
    id_hash         TEXT PRIMARY KEY NOT NULL,
    purpose         TEXT NOT NULL,
    entry           TEXT,
    person          TEXT,
    enterprise      TEXT,
    agency          TEXT,
    target_phone    TEXT,
    code_hash       TEXT,
    code_expires_at INTEGER,
    code_attempts   INTEGER NOT NULL DEFAULT 0,
    face_nonce      TEXT,
    face_status     TEXT,
    client_addr     TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    consumed_at     INTEGER
);
CREATE UNIQUE INDEX challenges_face_nonce ON challenges (face_nonce);
CREATE INDEX challenges_expires_at ON challenges (expires_at);

CREATE TABLE sms_log (
    phone   TEXT NOT NULL,
    purpose TEXT NOT NULL,
    sent_at INTEGER NOT NULL
);
CREATE INDEX sms_log_phone_sent_at ON sms_log (phone, sent_at);

CREATE TABLE audit_events (
    id             TEXT PRIMARY KEY NOT NULL,
    at             INTEGER NOT NULL,
    request_id     TEXT,
    session_id     TEXT,
    person         TEXT,
    enterprise     TEXT,
    role           TEXT,
    entry          TEXT,
    action         TEXT NOT NULL,
    path           TEXT,
    allowed        BOOLEAN NOT NULL,
    policies       TEXT NOT NULL,
    reason         TEXT,
    policy_version TEXT,
    client_addr    TEXT,
    detail         TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_session ON audit_events (session_id);

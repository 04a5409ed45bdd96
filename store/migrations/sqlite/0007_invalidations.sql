-- Invalidations for the other processes on this database file (a `taxgate import` beside a
-- running gateway, or two gateways on one file): written in the transaction of the narrowing
-- write, polled by every process, pruned after an hour. PostgreSQL uses LISTEN/NOTIFY instead.
CREATE TABLE invalidations (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    src     TEXT NOT NULL,
    at      INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX invalidations_at ON invalidations (at);

-- The access log (SQLite, WAL), beside the decision log: sign-ins, sign-outs, refused access and signatures.
-- Append-only: the triggers refuse UPDATE and DELETE. One sign-in row per sign-in at the provider (the
-- unique index on its auth_time): every rerun of every page of that session would otherwise add one.
CREATE TABLE IF NOT EXISTS access_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at_utc     TEXT NOT NULL,      -- ISO 8601, ending in Z
    event      TEXT NOT NULL CHECK (event IN ('sign-in', 'sign-out', 'denied', 'expired', 'signature')),
    issuer     TEXT NOT NULL,      -- the provider; '' when nobody is signed in
    subject    TEXT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    auth_time  TEXT,               -- the sign-in at the provider this row belongs to
    what       TEXT NOT NULL,      -- the page, study and subject asked for, or the record signed
    detail     TEXT NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS access_log_one_sign_in ON access_log (issuer, subject, auth_time)
    WHERE event = 'sign-in';

CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;

CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;

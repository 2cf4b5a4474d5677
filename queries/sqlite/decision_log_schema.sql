-- The SMC decision log (SQLite, WAL). Append-only: rows are never updated or
-- deleted; a correction is a new row whose `supersedes` names the old one.
-- `hash` seals the row, `prev_hash` is the hash of the study's previous row and
-- `prev_file_hash` that of the file's previous row, any study (64 zeros for a
-- first), so any edit breaks a chain. `hash_kind` says how the row is sealed:
--   'hmac-sha256-signed': HMAC-SHA-256, under the key kept outside the log, of
--                  every other column, the signer's included (a row cannot be
--                  forged without the key);
--   'hmac-sha256': the same over the columns up to `prev_file_hash`, for rows
--                  written after keying and before sign-in;
--   'sha256':      SHA-256 of the columns before `hash`, for rows written before
--                  the log was keyed (the later columns did not exist then).
-- A log made before keying or sign-in gets the new columns in place, old rows
-- untouched (ledger.MIGRATIONS): so they stay last, here too.
-- `kind` is 'decision', or 'approval': the chair's signature on the decision
-- record `approves`, restating its fields.
CREATE TABLE IF NOT EXISTS decisions (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a deleted last id is never reused
    study_id               TEXT    NOT NULL,
    seq                    INTEGER NOT NULL,                   -- 1, 2, ... within the study
    recorded_at_utc        TEXT    NOT NULL,                   -- ISO 8601, ending in Z
    meeting_date           TEXT    NOT NULL,
    data_cut_date          TEXT    NOT NULL,                   -- the as-of date of the data the SMC reviewed
    level                  INTEGER NOT NULL,
    decision               TEXT    NOT NULL,
    follows_recommendation INTEGER NOT NULL CHECK (follows_recommendation IN (0, 1)),
    recommended_action     TEXT    NOT NULL,                   -- the protocol rule's action on data_cut_date
    recommended_level      INTEGER,
    rationale              TEXT    NOT NULL,
    attendees              TEXT    NOT NULL,
    recorded_by            TEXT    NOT NULL,
    supersedes             INTEGER REFERENCES decisions (id),
    data_source            TEXT    NOT NULL,                   -- the trial database file and its load time
    prev_hash              TEXT    NOT NULL,
    hash                   TEXT    NOT NULL,
    hash_kind              TEXT    NOT NULL DEFAULT 'sha256',  -- see above
    prev_file_hash         TEXT,                               -- NULL on rows written before keying
    kind                   TEXT    NOT NULL DEFAULT 'decision', -- or 'approval'
    approves               INTEGER REFERENCES decisions (id),
    signer_issuer          TEXT,                               -- the provider (NULL on rows from before sign-in)
    signer_subject         TEXT,                               -- the person at that provider, for good
    signer_email           TEXT,
    signer_role            TEXT,
    signature_meaning      TEXT,                               -- e.g. 'recorded as SMC member'
    signer_auth_time_utc   TEXT,                               -- when they last typed their password there
    stage                  TEXT,                               -- the stage decided on (staged studies); NULL: the only stage
    UNIQUE (study_id, seq)
);

CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only: record a correction instead'); END;

CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only: record a correction instead'); END;

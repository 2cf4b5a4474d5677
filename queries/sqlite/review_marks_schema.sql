-- Review marks (SQLite, WAL), in the decision log's file: an SMC member marked a subject, or one of its records,
-- as reviewed on a data cut. Append-only: the triggers refuse UPDATE and DELETE; a later mark supersedes an
-- earlier one of the same subject (or record) by being later.
CREATE TABLE IF NOT EXISTS review_marks (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id          TEXT NOT NULL,
    subject_id        TEXT NOT NULL,
    record_table      TEXT NOT NULL DEFAULT '',  -- '' marks the whole subject; else a contract table
    record_key        TEXT NOT NULL DEFAULT '',  -- the record's key (canonical JSON) within that table
    cut_sha256        TEXT NOT NULL,             -- the data cut the reviewer was looking at
    cut_file          TEXT NOT NULL,
    reviewer_issuer   TEXT NOT NULL,             -- who, from the sign-in
    reviewer_subject  TEXT NOT NULL,
    reviewer_name     TEXT NOT NULL,
    reviewer_role     TEXT NOT NULL,
    marked_at_utc     TEXT NOT NULL              -- ISO 8601, ending in Z
);

CREATE INDEX IF NOT EXISTS review_marks_study ON review_marks (study_id, subject_id);

CREATE TRIGGER IF NOT EXISTS review_marks_no_update BEFORE UPDATE ON review_marks
BEGIN SELECT RAISE(ABORT, 'review marks are append-only'); END;

CREATE TRIGGER IF NOT EXISTS review_marks_no_delete BEFORE DELETE ON review_marks
BEGIN SELECT RAISE(ABORT, 'review marks are append-only'); END;

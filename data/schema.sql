-- The data contract (../shared/DATA_CONTRACT.md) as DuckDB tables.
-- Column names are a public interface: add, never rename.
-- The loader validates every rule below before writing, so these constraints
-- are a second line of defence, not the user-facing error messages.

CREATE TABLE studies (
    study_id            VARCHAR PRIMARY KEY,
    title               VARCHAR,
    design              VARCHAR NOT NULL CHECK (design IN ('3+3', 'ATD+3+3')),
    agent               VARCHAR NOT NULL,
    dlt_window_days     INTEGER NOT NULL CHECK (dlt_window_days > 0),
    target_dlt_rate     DOUBLE CHECK (target_dlt_rate > 0 AND target_dlt_rate < 1),
    planned_enrollment  INTEGER CHECK (planned_enrollment >= 0),
    min_sd_days         INTEGER CHECK (min_sd_days >= 0),
    indication          VARCHAR,
    data_cut_date       DATE
);

CREATE TABLE dose_levels (
    study_id  VARCHAR NOT NULL REFERENCES studies (study_id),
    level     INTEGER NOT NULL CHECK (level <> 0),
    label     VARCHAR NOT NULL,
    dose      DOUBLE CHECK (dose >= 0),
    unit      VARCHAR,
    PRIMARY KEY (study_id, level)
);

CREATE TABLE sites (
    site_id  VARCHAR PRIMARY KEY,
    name     VARCHAR,
    country  VARCHAR
);

CREATE TABLE subjects (
    study_id              VARCHAR NOT NULL REFERENCES studies (study_id),
    subject_id            VARCHAR NOT NULL,
    site_id               VARCHAR,
    sex                   VARCHAR CHECK (sex IN ('M', 'F')),
    age                   INTEGER CHECK (age >= 0 AND age < 130),
    screening_date        DATE,
    enrollment_date       DATE,
    screen_fail_reason    VARCHAR,
    dose_level            INTEGER,
    phase                 VARCHAR NOT NULL DEFAULT 'escalation'
                          CHECK (phase IN ('escalation', 'expansion')),
    cohort                INTEGER,
    dlt_evaluable         VARCHAR CHECK (dlt_evaluable IN ('Y', 'N')),
    off_treatment_date    DATE,
    off_treatment_reason  VARCHAR,
    off_study_date        DATE,
    off_study_reason      VARCHAR,
    death_date            DATE,
    death_cause           VARCHAR,
    last_contact_date     DATE,
    PRIMARY KEY (study_id, subject_id),
    FOREIGN KEY (study_id, dose_level) REFERENCES dose_levels (study_id, level),
    CHECK (enrollment_date IS NULL OR dose_level IS NOT NULL)
);

CREATE TABLE administrations (
    study_id    VARCHAR NOT NULL,
    subject_id  VARCHAR NOT NULL,
    agent       VARCHAR NOT NULL,
    admin_date  DATE NOT NULL,
    admin_time  VARCHAR CHECK (regexp_full_match(admin_time, '[0-2][0-9]:[0-5][0-9]')),
    end_date    DATE CHECK (end_date >= admin_date),
    dose        DOUBLE,
    unit        VARCHAR,
    route       VARCHAR,
    cycle       INTEGER,
    day         INTEGER,
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id)
);

CREATE TABLE adverse_events (
    study_id      VARCHAR NOT NULL,
    subject_id    VARCHAR NOT NULL,
    ae_seq        INTEGER,
    term          VARCHAR NOT NULL,
    soc           VARCHAR,
    onset_date    DATE NOT NULL,
    end_date      DATE CHECK (end_date >= onset_date),
    grade         INTEGER NOT NULL CHECK (grade BETWEEN 1 AND 5),
    serious       VARCHAR CHECK (serious IN ('Y', 'N')),
    related       VARCHAR CHECK (related IN ('Y', 'N')),
    dlt           VARCHAR NOT NULL CHECK (dlt IN ('Y', 'N')),
    outcome       VARCHAR,
    action_taken  VARCHAR,
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id)
);

CREATE TABLE tumor_assessments (
    study_id            VARCHAR NOT NULL,
    subject_id          VARCHAR NOT NULL,
    assessment_date     DATE NOT NULL,
    target_sum_mm       DOUBLE CHECK (target_sum_mm >= 0),
    new_lesions         VARCHAR CHECK (new_lesions IN ('Y', 'N')),
    nontarget_response  VARCHAR CHECK (nontarget_response IN ('CR', 'NON-CR/NON-PD', 'PD', 'NE')),
    overall_response    VARCHAR CHECK (overall_response IN ('CR', 'PR', 'SD', 'PD', 'NE')),
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id)
);

CREATE TABLE lab_results (
    study_id      VARCHAR NOT NULL,
    subject_id    VARCHAR NOT NULL,
    collected_at  TIMESTAMP NOT NULL,
    category      VARCHAR CHECK (category IN ('hematology', 'chemistry', 'tumor_marker', 't_cell',
                                              'virology', 'pk', 'cytokine', 'immunogenicity', 'other')),
    test          VARCHAR NOT NULL,
    specimen      VARCHAR,
    value         DOUBLE,
    unit          VARCHAR,
    lloq          DOUBLE,
    ref_low       DOUBLE,
    ref_high      DOUBLE,
    grade         INTEGER CHECK (grade BETWEEN 0 AND 4),
    CHECK (value IS NOT NULL OR lloq IS NOT NULL),
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id)
);

-- Not part of the CSV contract: one row describing where this data cut came from.
CREATE TABLE load_info (
    source         VARCHAR NOT NULL,
    loaded_at_utc  TIMESTAMP NOT NULL,
    n_warnings     INTEGER NOT NULL,
    smc_version    VARCHAR NOT NULL
);

-- The data contract (docs/data-contract.md) as DuckDB tables.
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
    enrollment_target_date DATE,
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

-- Optional: the stages of a regimen given in stages (e.g. monotherapy, then a combination), each with its own DLT
-- window and escalation. A study without rows has one stage: studies.agent and studies.dlt_window_days.
CREATE TABLE stages (
    study_id         VARCHAR NOT NULL REFERENCES studies (study_id),
    stage            VARCHAR NOT NULL,
    stage_order      INTEGER NOT NULL CHECK (stage_order >= 1),
    agent            VARCHAR NOT NULL,
    dlt_window_days  INTEGER NOT NULL CHECK (dlt_window_days > 0),
    start_level      INTEGER,
    ceiling_stage    VARCHAR,
    PRIMARY KEY (study_id, stage),
    UNIQUE (study_id, stage_order),
    FOREIGN KEY (study_id, start_level) REFERENCES dose_levels (study_id, level)
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

-- Optional: the subjects of each later stage (every enrolled subject is in the first stage at subjects.dose_level).
CREATE TABLE subject_stages (
    study_id    VARCHAR NOT NULL,
    subject_id  VARCHAR NOT NULL,
    stage       VARCHAR NOT NULL,
    dose_level  INTEGER NOT NULL,
    start_date  DATE,
    PRIMARY KEY (study_id, subject_id, stage),
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id),
    FOREIGN KEY (study_id, stage) REFERENCES stages (study_id, stage),
    FOREIGN KEY (study_id, dose_level) REFERENCES dose_levels (study_id, level)
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
    ae_spid       VARCHAR,
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

-- The contract's descriptions, for the Explore page's schema browser and
-- `SELECT table_name, column_name, comment FROM duckdb_columns()`.
COMMENT ON TABLE studies IS 'One row per study: design, escalated agent, DLT window, plan and data cut.';
COMMENT ON TABLE dose_levels IS 'The dose ladder of each study; order = numeric order of level.';
COMMENT ON TABLE stages IS 'Optional: the stages of a staged regimen (monotherapy, then combination), each with its own DLT window and escalation; no rows: one stage.';
COMMENT ON TABLE subject_stages IS 'Optional: each subject''s level and start in a later stage (the first stage holds every subject at subjects.dose_level).';
COMMENT ON TABLE sites IS 'Clinical sites.';
COMMENT ON TABLE subjects IS 'One row per screened subject (screen failures have no enrollment_date).';
COMMENT ON TABLE administrations IS 'One row per administration (or per daily-dosing period).';
COMMENT ON TABLE adverse_events IS 'One row per adverse event, CTCAE v5 graded, with the adjudicated DLT flag.';
COMMENT ON TABLE tumor_assessments IS 'One row per RECIST 1.1 time point; the baseline row (on or before the first dose) has no overall_response.';
COMMENT ON TABLE lab_results IS 'All longitudinal measurements: safety labs, tumor markers, immune cells, virology, PK, cytokines, immunogenicity.';
COMMENT ON COLUMN studies.study_id IS 'short identifier, e.g. IDOV-SAFE-101 (required)';
COMMENT ON COLUMN studies.title IS 'full title';
COMMENT ON COLUMN studies.design IS '3+3, or ATD+3+3 (accelerated titration: one subject per level until the first DLT, then 3+3) (required)';
COMMENT ON COLUMN studies.agent IS 'the dose-escalated investigational product; a subject''s DLT window starts at its first administration of this agent (required)';
COMMENT ON COLUMN studies.dlt_window_days IS 'length of the DLT observation window in days (e.g. 21, 28) (required)';
COMMENT ON COLUMN studies.target_dlt_rate IS 'target DLT rate for model-based advice (BOIN); default 0.30';
COMMENT ON COLUMN studies.planned_enrollment IS 'planned number of subjects (escalation + expansion)';
COMMENT ON COLUMN studies.enrollment_target_date IS 'date by which planned_enrollment should be reached (the enrollment plan); empty: no date';
COMMENT ON COLUMN studies.min_sd_days IS 'RECIST minimum time from first dose for a best response of SD; default 42';
COMMENT ON COLUMN studies.indication IS 'e.g. Advanced solid tumors';
COMMENT ON COLUMN studies.data_cut_date IS 'date the data were extracted; the default "as of" date';
COMMENT ON COLUMN dose_levels.study_id IS 'study identifier (studies.study_id) (required)';
COMMENT ON COLUMN dose_levels.level IS 'integer. Level 1 is the starting dose; 2, 3, … escalate; -1, -2 are de-escalation levels below the start. Order = numeric order (required)';
COMMENT ON COLUMN dose_levels.label IS 'human label, e.g. 3×10^8 PFU (required)';
COMMENT ON COLUMN dose_levels.dose IS 'numeric dose of agent';
COMMENT ON COLUMN dose_levels.unit IS 'PFU, VP, cells, mg, …';
COMMENT ON COLUMN stages.study_id IS 'study identifier (studies.study_id) (required)';
COMMENT ON COLUMN stages.stage IS 'the stage''s name, e.g. monotherapy, combination (required)';
COMMENT ON COLUMN stages.stage_order IS '1, 2, … without gaps, in the order subjects go through the stages; stage 1 must have the study''s agent and dlt_window_days (required)';
COMMENT ON COLUMN stages.agent IS 'the agent whose first administration in this stage starts the stage''s DLT window, e.g. toripalimab (required)';
COMMENT ON COLUMN stages.dlt_window_days IS 'length of the stage''s DLT window in days (required)';
COMMENT ON COLUMN stages.start_level IS 'the level the stage opens at; empty: level 1 when the stage may use it, else its lowest allowed level';
COMMENT ON COLUMN stages.ceiling_stage IS 'an earlier stage whose cleared levels cap this one: the stage may use only levels cleared there, and the highest of them is its top dose; empty: none';
COMMENT ON COLUMN subject_stages.study_id IS 'study identifier (studies.study_id) (required)';
COMMENT ON COLUMN subject_stages.subject_id IS 'an enrolled subject (required)';
COMMENT ON COLUMN subject_stages.stage IS 'a later stage of the study (stages.stage; not the first) (required)';
COMMENT ON COLUMN subject_stages.dose_level IS 'the subject''s level of the study''s agent in that stage (required)';
COMMENT ON COLUMN subject_stages.start_date IS 'the day the subject entered the stage (not before its enrollment_date); empty: its first administration of the stage''s agent (then that agent must not also be an earlier stage''s)';
COMMENT ON COLUMN sites.site_id IS 'site id (required)';
COMMENT ON COLUMN sites.name IS 'name';
COMMENT ON COLUMN sites.country IS 'country';
COMMENT ON COLUMN subjects.study_id IS 'study identifier (studies.study_id) (required)';
COMMENT ON COLUMN subjects.subject_id IS 'unique within the study (required)';
COMMENT ON COLUMN subjects.site_id IS 'site id';
COMMENT ON COLUMN subjects.sex IS 'M/F';
COMMENT ON COLUMN subjects.age IS 'years at consent';
COMMENT ON COLUMN subjects.screening_date IS 'screening date';
COMMENT ON COLUMN subjects.enrollment_date IS 'empty for a screen failure (required)';
COMMENT ON COLUMN subjects.screen_fail_reason IS 'screen fail reason';
COMMENT ON COLUMN subjects.dose_level IS 'assigned level (empty for a screen failure) (required)';
COMMENT ON COLUMN subjects.phase IS 'escalation (default) or expansion; only escalation subjects count in escalation decisions';
COMMENT ON COLUMN subjects.cohort IS 'cohort number within the study';
COMMENT ON COLUMN subjects.dlt_evaluable IS 'N marks a subject as not evaluable for DLT (replaced); empty means derive it';
COMMENT ON COLUMN subjects.off_treatment_date IS 'last day on study treatment';
COMMENT ON COLUMN subjects.off_treatment_reason IS 'off treatment reason';
COMMENT ON COLUMN subjects.off_study_date IS 'date the subject left the study (withdrawal, lost to follow-up, death)';
COMMENT ON COLUMN subjects.off_study_reason IS 'off study reason';
COMMENT ON COLUMN subjects.death_date IS 'death date';
COMMENT ON COLUMN subjects.death_cause IS 'death cause';
COMMENT ON COLUMN subjects.last_contact_date IS 'last date known alive';
COMMENT ON COLUMN administrations.study_id IS 'study identifier (studies.study_id) (required)';
COMMENT ON COLUMN administrations.subject_id IS 'subject identifier, unique within the study (required)';
COMMENT ON COLUMN administrations.agent IS 'e.g. IDOV-SAFE, toripalimab, regorafenib, IL-2, cyclophosphamide (required)';
COMMENT ON COLUMN administrations.admin_date IS 'admin date (required)';
COMMENT ON COLUMN administrations.admin_time IS 'clock time the administration started (HH:MM), for hours-after-dose of PK-like samples';
COMMENT ON COLUMN administrations.end_date IS 'last day of a continuous dosing period (e.g. oral D1–D21)';
COMMENT ON COLUMN administrations.dose IS 'dose';
COMMENT ON COLUMN administrations.unit IS 'unit';
COMMENT ON COLUMN administrations.route IS 'IV, HAI (hepatic artery infusion), PO, SC, …';
COMMENT ON COLUMN administrations.cycle IS 'cycle';
COMMENT ON COLUMN administrations.day IS 'study day within cycle';
COMMENT ON COLUMN adverse_events.study_id IS 'study identifier (studies.study_id) (required)';
COMMENT ON COLUMN adverse_events.subject_id IS 'subject identifier, unique within the study (required)';
COMMENT ON COLUMN adverse_events.ae_seq IS 'sequence number within subject';
COMMENT ON COLUMN adverse_events.ae_spid IS 'the sponsor''s identifier of the AE (SDTM AESPID), stable from one data cut to the next; with ae_seq, what matches an AE across cuts (data-contract.md, Record keys)';
COMMENT ON COLUMN adverse_events.term IS 'preferred term (MedDRA-like), e.g. Cytokine release syndrome (required)';
COMMENT ON COLUMN adverse_events.soc IS 'system organ class, e.g. Immune system disorders';
COMMENT ON COLUMN adverse_events.onset_date IS 'onset date (required)';
COMMENT ON COLUMN adverse_events.end_date IS 'empty if ongoing';
COMMENT ON COLUMN adverse_events.grade IS 'CTCAE v5 grade 1–5 (required)';
COMMENT ON COLUMN adverse_events.serious IS 'Y/N';
COMMENT ON COLUMN adverse_events.related IS 'Y/N: related to study treatment per investigator';
COMMENT ON COLUMN adverse_events.dlt IS 'Y/N: adjudicated dose-limiting toxicity (required)';
COMMENT ON COLUMN adverse_events.outcome IS 'outcome';
COMMENT ON COLUMN adverse_events.action_taken IS 'action taken';
COMMENT ON COLUMN tumor_assessments.study_id IS 'study identifier (studies.study_id) (required)';
COMMENT ON COLUMN tumor_assessments.subject_id IS 'subject identifier, unique within the study (required)';
COMMENT ON COLUMN tumor_assessments.assessment_date IS 'assessment date (required)';
COMMENT ON COLUMN tumor_assessments.target_sum_mm IS 'sum of diameters of target lesions (mm)';
COMMENT ON COLUMN tumor_assessments.new_lesions IS 'Y/N';
COMMENT ON COLUMN tumor_assessments.nontarget_response IS 'CR, NON-CR/NON-PD, PD, NE';
COMMENT ON COLUMN tumor_assessments.overall_response IS 'investigator time-point response: CR, PR, SD, PD, NE';
COMMENT ON COLUMN lab_results.study_id IS 'study identifier (studies.study_id) (required)';
COMMENT ON COLUMN lab_results.subject_id IS 'subject identifier, unique within the study (required)';
COMMENT ON COLUMN lab_results.collected_at IS 'date or timestamp of collection (required)';
COMMENT ON COLUMN lab_results.category IS 'hematology, chemistry (safety labs), tumor_marker, t_cell, virology, pk, cytokine, immunogenicity, other';
COMMENT ON COLUMN lab_results.test IS 'e.g. Neutrophils, Platelets, ALT, AST, Bilirubin, Creatinine, CA19-9, CEA, CA125, CD8+ effector memory T cells, PD-1+TIM-3+ CD8+ T cells, Viral DNA, Live virus, Adenovirus copies, IL-12, Neutralizing antibody titer, TCR gene copies, TCR-T cells, Anti-drug antibody (required)';
COMMENT ON COLUMN lab_results.specimen IS 'serum, plasma, whole blood, PBMC, urine, throat swab, rectal swab, injection-site swab';
COMMENT ON COLUMN lab_results.value IS 'numeric result; for a result below the limit of quantification give the limit in lloq and leave value empty (required)';
COMMENT ON COLUMN lab_results.unit IS 'unit';
COMMENT ON COLUMN lab_results.lloq IS 'lower limit of quantification';
COMMENT ON COLUMN lab_results.ref_low IS 'lower limit of the normal range (safety labs)';
COMMENT ON COLUMN lab_results.ref_high IS 'upper limit of normal (ULN)';
COMMENT ON COLUMN lab_results.grade IS 'CTCAE v5 grade of this result where the lab grades it (0–4)';

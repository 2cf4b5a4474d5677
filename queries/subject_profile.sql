-- One subject as known on $as_of: demographics, assignment, first doses, and
-- the end-of-treatment, off-study and death facts that had happened by then.
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
known_subjects AS (
    -- include: known_subjects
),
first_doses AS (
    -- include: first_doses
),
course AS (
    SELECT max(coalesce(least(end_date, $as_of), admin_date)) AS last_dose_date, count(*) AS n_administrations
    FROM administrations
    WHERE study_id = $study_id AND subject_id = $subject_id AND admin_date <= $as_of
)
SELECT s.subject_id, s.site_id, t.name AS site_name, t.country, s.sex, s.age, s.screening_date,
       s.enrollment_date, s.dose_level AS level, s.phase, s.cohort, s.dlt_evaluable,
       f.first_dose_date, f.first_agent_dose_date, c.last_dose_date, c.n_administrations,
       s.off_treatment_date, s.off_treatment_reason, s.off_study_date, s.off_study_reason,
       s.death_date, s.death_cause, s.last_contact_date
FROM known_subjects s
LEFT JOIN sites t USING (site_id)
LEFT JOIN first_doses f USING (subject_id)
CROSS JOIN course c
WHERE s.subject_id = $subject_id AND s.enrollment_date <= $as_of

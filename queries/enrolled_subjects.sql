-- Subjects enrolled by $as_of: assignment, site, sex, age, enrollment, first dose of the study's agent,
-- and end of treatment, off study and death (with reason or cause) if they had happened by then.
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
known_subjects AS (
    -- include: known_subjects
),
first_doses AS (
    -- include: first_doses
)
SELECT s.subject_id, s.dose_level AS level, s.phase, s.cohort, s.site_id, s.sex, s.age,
       s.enrollment_date, f.first_agent_dose_date AS first_dose_date,
       s.off_treatment_date, s.off_treatment_reason, s.off_study_date, s.off_study_reason, s.death_date, s.death_cause
FROM known_subjects s LEFT JOIN first_doses f USING (subject_id)
WHERE s.enrollment_date <= $as_of
ORDER BY s.dose_level, s.enrollment_date, s.subject_id

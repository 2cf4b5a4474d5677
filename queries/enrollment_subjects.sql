-- Every subject of $study_id screened by $as_of (screening date, else enrollment date), with what was known
-- on $as_of: enrollment, assignment, first dose of any study treatment, end of treatment, off study, death.
-- A screen failure counts from its screening date.
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
known_subjects AS (
    -- include: known_subjects
),
first_doses AS (
    -- include: first_doses
)
SELECT s.subject_id, s.site_id, coalesce(t.name, s.site_id) AS site_name,
       coalesce(s.screening_date, s.enrollment_date) AS screened_on, s.screening_date,
       s.enrollment_date IS NULL AS screen_failed,
       CASE WHEN s.enrollment_date IS NULL THEN coalesce(s.screen_fail_reason, 'not recorded') END
           AS screen_fail_reason,
       CASE WHEN s.enrollment_date <= $as_of THEN s.enrollment_date END AS enrollment_date,
       CASE WHEN s.enrollment_date <= $as_of THEN s.dose_level END AS level,
       CASE WHEN s.enrollment_date <= $as_of THEN s.phase END AS phase,
       f.first_dose_date, s.off_treatment_date, s.off_study_date, s.off_study_reason, s.death_date
FROM known_subjects s
LEFT JOIN sites t USING (site_id)
LEFT JOIN first_doses f USING (subject_id)
WHERE coalesce(s.screening_date, s.enrollment_date) <= $as_of
ORDER BY screened_on, s.subject_id

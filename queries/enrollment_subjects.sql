-- Every subject of $study_id screened by $as_of (screening date, else enrollment date), with what was known
-- on $as_of: enrollment, assignment, first dose of any study treatment, end of treatment, off study, death.
-- A screen failure counts from its screening date.
WITH first_dose AS (
    SELECT subject_id, min(admin_date) AS first_dose_date
    FROM administrations
    WHERE study_id = $study_id AND admin_date <= $as_of
    GROUP BY subject_id
)
SELECT s.subject_id, s.site_id, coalesce(t.name, s.site_id) AS site_name,
       coalesce(s.screening_date, s.enrollment_date) AS screened_on, s.screening_date,
       s.enrollment_date IS NULL AS screen_failed,
       CASE WHEN s.enrollment_date IS NULL THEN coalesce(s.screen_fail_reason, 'not recorded') END
           AS screen_fail_reason,
       CASE WHEN s.enrollment_date <= $as_of THEN s.enrollment_date END AS enrollment_date,
       CASE WHEN s.enrollment_date <= $as_of THEN s.dose_level END AS level,
       CASE WHEN s.enrollment_date <= $as_of THEN s.phase END AS phase,
       f.first_dose_date,
       CASE WHEN s.off_treatment_date <= $as_of THEN s.off_treatment_date END AS off_treatment_date,
       CASE WHEN s.off_study_date <= $as_of THEN s.off_study_date END AS off_study_date,
       CASE WHEN s.off_study_date <= $as_of THEN s.off_study_reason END AS off_study_reason,
       CASE WHEN s.death_date <= $as_of THEN s.death_date END AS death_date
FROM subjects s
LEFT JOIN sites t USING (site_id)
LEFT JOIN first_dose f USING (subject_id)
WHERE s.study_id = $study_id AND coalesce(s.screening_date, s.enrollment_date) <= $as_of
ORDER BY screened_on, s.subject_id

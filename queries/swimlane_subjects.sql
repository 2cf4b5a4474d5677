-- One lane per enrolled subject as of $as_of, with first dose of the agent
-- and the dates that end a lane (off study, death) if they had happened.
WITH first_dose AS (
    SELECT a.subject_id, min(a.admin_date) AS first_dose_date
    FROM administrations a JOIN studies s ON s.study_id = a.study_id AND s.agent = a.agent
    WHERE a.study_id = $study_id AND a.admin_date <= $as_of
    GROUP BY a.subject_id
)
SELECT s.subject_id, s.dose_level AS level, s.phase, s.cohort, s.site_id, s.sex, s.age,
       s.enrollment_date, f.first_dose_date,
       CASE WHEN s.off_treatment_date <= $as_of THEN s.off_treatment_date END AS off_treatment_date,
       CASE WHEN s.off_treatment_date <= $as_of THEN s.off_treatment_reason END AS off_treatment_reason,
       CASE WHEN s.off_study_date <= $as_of THEN s.off_study_date END AS off_study_date,
       CASE WHEN s.off_study_date <= $as_of THEN s.off_study_reason END AS off_study_reason,
       CASE WHEN s.death_date <= $as_of THEN s.death_date END AS death_date,
       CASE WHEN s.death_date <= $as_of THEN s.death_cause END AS death_cause
FROM subjects s LEFT JOIN first_dose f USING (subject_id)
WHERE s.study_id = $study_id AND s.enrollment_date <= $as_of
ORDER BY s.dose_level, s.enrollment_date, s.subject_id

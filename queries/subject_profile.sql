-- One subject as known on $as_of: demographics, assignment, first doses, and
-- the end-of-treatment, off-study and death facts that had happened by then.
WITH doses AS (
    SELECT min(admin_date) AS first_dose_date,
           min(admin_date) FILTER (WHERE agent = (SELECT agent FROM studies WHERE study_id = $study_id))
               AS first_agent_dose_date,
           max(coalesce(least(end_date, $as_of), admin_date)) AS last_dose_date,
           count(*) AS n_administrations
    FROM administrations
    WHERE study_id = $study_id AND subject_id = $subject_id AND admin_date <= $as_of
)
SELECT s.subject_id, s.site_id, t.name AS site_name, t.country, s.sex, s.age, s.screening_date,
       s.enrollment_date, s.dose_level AS level, s.phase, s.cohort, s.dlt_evaluable,
       d.first_dose_date, d.first_agent_dose_date, d.last_dose_date, d.n_administrations,
       CASE WHEN s.off_treatment_date <= $as_of THEN s.off_treatment_date END AS off_treatment_date,
       CASE WHEN s.off_treatment_date <= $as_of THEN s.off_treatment_reason END AS off_treatment_reason,
       CASE WHEN s.off_study_date <= $as_of THEN s.off_study_date END AS off_study_date,
       CASE WHEN s.off_study_date <= $as_of THEN s.off_study_reason END AS off_study_reason,
       CASE WHEN s.death_date <= $as_of THEN s.death_date END AS death_date,
       CASE WHEN s.death_date <= $as_of THEN s.death_cause END AS death_cause,
       CASE WHEN s.last_contact_date <= $as_of THEN s.last_contact_date END AS last_contact_date
FROM subjects s
LEFT JOIN sites t USING (site_id)
CROSS JOIN doses d
WHERE s.study_id = $study_id AND s.subject_id = $subject_id AND s.enrollment_date <= $as_of

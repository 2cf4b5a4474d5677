-- What the escalation rule needs per enrolled subject, as known on $as_of:
-- first dose of the study's agent, onsets of adjudicated DLTs, and the date
-- the subject left the study (off study or death, whichever came first).
WITH study AS (
    SELECT agent FROM studies WHERE study_id = $study_id
),
first_dose AS (
    SELECT a.subject_id, min(a.admin_date) AS first_dose_date
    FROM administrations a, study
    WHERE a.study_id = $study_id AND a.agent = study.agent AND a.admin_date <= $as_of
    GROUP BY a.subject_id
),
dlts AS (
    SELECT subject_id, list(onset_date ORDER BY onset_date) AS dlt_onsets
    FROM adverse_events
    WHERE study_id = $study_id AND dlt = 'Y' AND onset_date <= $as_of
    GROUP BY subject_id
)
SELECT s.subject_id,
       s.dose_level AS level,
       s.phase,
       s.cohort,
       s.enrollment_date,
       f.first_dose_date,
       coalesce(d.dlt_onsets, []) AS dlt_onsets,
       CASE WHEN least(s.off_study_date, s.death_date) <= $as_of
            THEN least(s.off_study_date, s.death_date) END AS off_study_date,
       s.dlt_evaluable
FROM subjects s
LEFT JOIN first_dose f USING (subject_id)
LEFT JOIN dlts d USING (subject_id)
WHERE s.study_id = $study_id
  AND s.enrollment_date <= $as_of
ORDER BY s.dose_level, s.enrollment_date, s.subject_id

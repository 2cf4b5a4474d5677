-- What the escalation rule needs per enrolled subject of each study in $cuts (a list of
-- {study_id, as_of}: one study for a page, every study for the portfolio), as known on that study's
-- as_of: first dose of the study's agent, onsets of adjudicated DLTs, and the date the subject left
-- the study (off study or death, whichever came first).
WITH cut AS (
    SELECT c.study_id, c.as_of, st.agent
    FROM (SELECT unnest($cuts, recursive := true)) c
    JOIN studies st USING (study_id)
),
first_dose AS (
    SELECT a.study_id, a.subject_id, min(a.admin_date) AS first_dose_date
    FROM administrations a
    JOIN cut ON a.study_id = cut.study_id AND a.agent = cut.agent AND a.admin_date <= cut.as_of
    GROUP BY a.study_id, a.subject_id
),
dlts AS (
    SELECT e.study_id, e.subject_id, list(e.onset_date ORDER BY e.onset_date) AS dlt_onsets
    FROM adverse_events e
    JOIN cut ON e.study_id = cut.study_id AND e.dlt = 'Y' AND e.onset_date <= cut.as_of
    GROUP BY e.study_id, e.subject_id
)
SELECT s.study_id,
       s.subject_id,
       s.dose_level AS level,
       s.phase,
       s.cohort,
       s.enrollment_date,
       f.first_dose_date,
       coalesce(d.dlt_onsets, []) AS dlt_onsets,
       CASE WHEN least(s.off_study_date, s.death_date) <= cut.as_of
            THEN least(s.off_study_date, s.death_date) END AS off_study_date,
       s.dlt_evaluable
FROM subjects s
JOIN cut ON s.study_id = cut.study_id AND s.enrollment_date <= cut.as_of
LEFT JOIN first_dose f ON f.study_id = s.study_id AND f.subject_id = s.subject_id
LEFT JOIN dlts d ON d.study_id = s.study_id AND d.subject_id = s.subject_id
ORDER BY s.study_id, s.dose_level, s.enrollment_date, s.subject_id

-- What the escalation rule needs per enrolled subject of each study in $cuts (a list of
-- {study_id, as_of}: one study for a page, every study for the portfolio), as known on that study's
-- as_of: first dose of the study's agent, onsets of adjudicated DLTs, and the date the subject left
-- the study (off study or death, whichever came first).
WITH cut AS (SELECT unnest($cuts, recursive := true)),
known_subjects AS (
    -- include: known_subjects
),
first_doses AS (
    -- include: first_doses
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
       f.first_agent_dose_date AS first_dose_date,
       coalesce(d.dlt_onsets, []) AS dlt_onsets,
       least(s.off_study_date, s.death_date) AS off_study_date,
       s.dlt_evaluable
FROM known_subjects s
JOIN cut ON s.study_id = cut.study_id AND s.enrollment_date <= cut.as_of
LEFT JOIN first_doses f ON f.study_id = s.study_id AND f.subject_id = s.subject_id
LEFT JOIN dlts d ON d.study_id = s.study_id AND d.subject_id = s.subject_id
ORDER BY s.study_id, s.dose_level, s.enrollment_date, s.subject_id

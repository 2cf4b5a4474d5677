-- The subjects of each later stage (subject_stages) of the studies in $cuts (a list of {study_id, as_of}), as
-- known on that study's as_of: the subject's level in the stage, the day it entered the stage (start_date, else
-- the first administration of the stage's agent) and its first administration of the stage's agent on or after
-- that day, which starts the stage's DLT window. NULL dates: not yet, on the as-of date.
WITH cut AS (SELECT unnest($cuts, recursive := true)),
entries AS (
    SELECT ss.study_id, ss.subject_id, ss.stage, st.stage_order, st.agent, ss.dose_level, ss.start_date, cut.as_of
    FROM subject_stages ss
    JOIN cut ON cut.study_id = ss.study_id
    JOIN stages st ON st.study_id = ss.study_id AND st.stage = ss.stage
),
stage_doses AS (
    SELECT e.study_id, e.subject_id, e.stage, min(a.admin_date) AS first_dose_date
    FROM entries e
    JOIN administrations a ON a.study_id = e.study_id AND a.subject_id = e.subject_id AND a.agent = e.agent
         AND a.admin_date <= e.as_of AND (e.start_date IS NULL OR a.admin_date >= e.start_date)
    GROUP BY e.study_id, e.subject_id, e.stage
)
SELECT e.study_id, e.subject_id, e.stage, e.stage_order, e.dose_level AS level,
       coalesce(e.start_date, d.first_dose_date) AS start_date, d.first_dose_date
FROM entries e
LEFT JOIN stage_doses d ON d.study_id = e.study_id AND d.subject_id = e.subject_id AND d.stage = e.stage
ORDER BY e.study_id, e.stage_order, e.subject_id

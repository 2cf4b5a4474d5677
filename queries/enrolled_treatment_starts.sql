-- Subjects enrolled by $as_of with their first dose of any study treatment
-- (the start of treatment emergence; NULL while not yet dosed).
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
first_doses AS (
    -- include: first_doses
)
SELECT s.subject_id, s.dose_level AS level, s.phase, f.first_dose_date
FROM subjects s LEFT JOIN first_doses f USING (subject_id)
WHERE s.study_id = $study_id AND s.enrollment_date <= $as_of
ORDER BY s.dose_level, s.enrollment_date, s.subject_id

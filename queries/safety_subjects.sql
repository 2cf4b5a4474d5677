-- Subjects enrolled by $as_of with their first dose of any study treatment
-- (the start of treatment emergence; NULL while not yet dosed).
WITH first_dose AS (
    SELECT subject_id, min(admin_date) AS first_dose_date
    FROM administrations
    WHERE study_id = $study_id AND admin_date <= $as_of
    GROUP BY subject_id
)
SELECT s.subject_id, s.dose_level AS level, s.phase, f.first_dose_date
FROM subjects s LEFT JOIN first_dose f USING (subject_id)
WHERE s.study_id = $study_id AND s.enrollment_date <= $as_of
ORDER BY s.dose_level, s.enrollment_date, s.subject_id

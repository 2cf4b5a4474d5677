-- Every lab, marker and biomarker result of one subject collected by $as_of,
-- with days (fractional) from the first dose of any study treatment.
WITH first_dose AS (
    SELECT min(admin_date) AS first_dose_date
    FROM administrations
    WHERE study_id = $study_id AND subject_id = $subject_id AND admin_date <= $as_of
)
SELECT l.category, l.test, l.specimen, l.collected_at, l.value, l.unit, l.lloq, l.ref_low, l.ref_high, l.grade,
       epoch(l.collected_at - f.first_dose_date::TIMESTAMP) / 86400.0 AS day
FROM lab_results l CROSS JOIN first_dose f
WHERE l.study_id = $study_id AND l.subject_id = $subject_id AND l.collected_at::DATE <= $as_of
ORDER BY l.category, l.test, l.specimen, l.collected_at

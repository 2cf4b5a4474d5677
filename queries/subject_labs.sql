-- Every lab, marker and biomarker result of one subject collected by $as_of,
-- with days (fractional) from the first dose of any study treatment.
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
first_doses AS (
    -- include: first_doses
)
SELECT l.category, l.test, l.specimen, l.collected_at, l.value, l.unit, l.lloq, l.ref_low, l.ref_high, l.grade,
       epoch(l.collected_at - f.first_dose_date::TIMESTAMP) / 86400.0 AS day
FROM lab_results l LEFT JOIN first_doses f USING (subject_id)
WHERE l.study_id = $study_id AND l.subject_id = $subject_id AND l.collected_at::DATE <= $as_of
ORDER BY l.category, l.test, l.specimen, l.collected_at

-- CA19-9: each subject's baseline (last result on or before the first dose), latest result and % change
WITH first_dose AS (
    SELECT subject_id, study_id, min(admin_date) AS first_dose_date FROM administrations GROUP BY ALL
), results AS (
    SELECT r.study_id, r.subject_id, r.collected_at, r.value, f.first_dose_date
    FROM lab_results r JOIN first_dose f USING (study_id, subject_id)
    WHERE r.test = 'CA19-9' AND r.value IS NOT NULL
)
SELECT study_id, subject_id,
       arg_max(value, collected_at) FILTER (WHERE collected_at::DATE <= first_dose_date) AS baseline,
       arg_max(value, collected_at) AS latest,
       round(100 * (latest - baseline) / baseline, 1) AS pct_change
FROM results
GROUP BY ALL
ORDER BY pct_change

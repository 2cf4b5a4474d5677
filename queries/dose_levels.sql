-- The study's dose ladder in numeric order (-1 < 1 < 2).
SELECT level, label, dose, unit
FROM dose_levels
WHERE study_id = $study_id
ORDER BY level

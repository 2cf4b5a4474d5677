-- Every study's dose ladder in numeric order (-1 < 1 < 2): a few rows per study, so one query serves a
-- single study's page and the portfolio alike.
SELECT study_id, level, label, dose, unit
FROM dose_levels
ORDER BY study_id, level

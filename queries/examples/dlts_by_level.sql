-- DLTs by dose level: subjects with at least one adjudicated DLT, and the DLT terms
SELECT s.study_id, s.dose_level AS level, l.label, count(DISTINCT a.subject_id) AS subjects_with_dlt,
       string_agg(DISTINCT a.term, '; ') AS dlt_terms
FROM adverse_events a
JOIN subjects s USING (study_id, subject_id)
JOIN dose_levels l ON l.study_id = s.study_id AND l.level = s.dose_level
WHERE a.dlt = 'Y'
GROUP BY ALL
ORDER BY s.study_id, level

-- Subjects per dose level and phase as of $as_of: enrolled, dosed (any study
-- treatment), on treatment, dead.
WITH dosed AS (
    SELECT DISTINCT subject_id
    FROM administrations
    WHERE study_id = $study_id AND admin_date <= $as_of
)
SELECT l.level,
       l.label,
       p.phase,
       count(s.subject_id) AS n_enrolled,
       count(d.subject_id) AS n_dosed,
       count(CASE WHEN s.death_date <= $as_of THEN 1 END) AS n_died
FROM dose_levels l
CROSS JOIN (VALUES ('escalation'), ('expansion')) p(phase)
LEFT JOIN subjects s
       ON s.study_id = l.study_id AND s.dose_level = l.level AND s.phase = p.phase
      AND s.enrollment_date <= $as_of
LEFT JOIN dosed d ON d.subject_id = s.subject_id
WHERE l.study_id = $study_id
GROUP BY l.level, l.label, p.phase
ORDER BY l.level, p.phase

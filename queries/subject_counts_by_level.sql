-- Subjects per dose level and phase as of $as_of: enrolled, dosed (any study
-- treatment), dead.
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
known_subjects AS (
    -- include: known_subjects
),
first_doses AS (
    -- include: first_doses
)
SELECT l.level,
       l.label,
       p.phase,
       count(s.subject_id) AS n_enrolled,
       count(d.subject_id) AS n_dosed,
       count(s.death_date) AS n_died
FROM dose_levels l
CROSS JOIN (VALUES ('escalation'), ('expansion')) p(phase)
LEFT JOIN known_subjects s
       ON s.study_id = l.study_id AND s.dose_level = l.level AND s.phase = p.phase
      AND s.enrollment_date <= $as_of
LEFT JOIN first_doses d ON d.subject_id = s.subject_id
WHERE l.study_id = $study_id
GROUP BY l.level, l.label, p.phase
ORDER BY l.level, p.phase

-- Lab results of the categories in $categories (a list) collected by $as_of of
-- subjects enrolled by then, with the first dose of any study treatment (the
-- safety baseline cut) and days from the first dose of the study's agent.
WITH doses AS (
    SELECT subject_id, min(admin_date) AS first_dose_date,
           min(admin_date) FILTER (WHERE agent = (SELECT agent FROM studies WHERE study_id = $study_id))
               AS first_agent_dose_date
    FROM administrations
    WHERE study_id = $study_id AND admin_date <= $as_of
    GROUP BY subject_id
)
SELECT l.subject_id, s.dose_level AS level, s.phase, l.category, l.test, l.collected_at, l.value, l.unit,
       l.lloq, l.ref_low, l.ref_high, l.grade, d.first_dose_date, d.first_agent_dose_date,
       datediff('day', d.first_agent_dose_date, l.collected_at::DATE) AS agent_day
FROM lab_results l
JOIN subjects s USING (study_id, subject_id)
LEFT JOIN doses d USING (subject_id)
WHERE l.study_id = $study_id AND list_contains($categories, l.category)
  AND l.collected_at::DATE <= $as_of AND s.enrollment_date <= $as_of
ORDER BY l.subject_id, l.test, l.collected_at

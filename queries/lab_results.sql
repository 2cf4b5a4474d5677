-- Lab results of the categories in $categories (a list) collected by $as_of of
-- subjects enrolled by then, with the first dose of any study treatment (the
-- safety baseline cut), days from the first dose of the study's agent, and the
-- clock times of the agent's first and second doses (hours after dose for
-- PK-like samples; a missing admin_time counts as midnight and is flagged).
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
first_doses AS (
    -- include: first_doses
),
agent_doses AS (
    SELECT subject_id, admin_date + coalesce(CAST(admin_time AS TIME), TIME '00:00') AS given_at,
           admin_time IS NOT NULL AS time_known,
           row_number() OVER (PARTITION BY subject_id ORDER BY admin_date, admin_time) AS nth
    FROM administrations
    WHERE study_id = $study_id AND admin_date <= $as_of
      AND agent = (SELECT agent FROM studies WHERE study_id = $study_id)
)
SELECT l.subject_id, s.dose_level AS level, s.phase, l.category, l.test, l.specimen, l.collected_at, l.value,
       l.unit, l.lloq, l.ref_low, l.ref_high, l.grade, d.first_dose_date, d.first_agent_dose_date,
       datediff('day', d.first_agent_dose_date, l.collected_at::DATE) AS agent_day,
       first_agent.given_at AS first_agent_dose_at, first_agent.time_known AS first_agent_dose_time_known,
       second_agent.given_at AS second_agent_dose_at
FROM lab_results l
JOIN subjects s USING (study_id, subject_id)
LEFT JOIN first_doses d USING (subject_id)
LEFT JOIN agent_doses first_agent ON first_agent.subject_id = l.subject_id AND first_agent.nth = 1
LEFT JOIN agent_doses second_agent ON second_agent.subject_id = l.subject_id AND second_agent.nth = 2
WHERE l.study_id = $study_id AND list_contains($categories, l.category)
  AND l.collected_at::DATE <= $as_of AND s.enrollment_date <= $as_of
ORDER BY l.subject_id, l.test, l.specimen, l.collected_at

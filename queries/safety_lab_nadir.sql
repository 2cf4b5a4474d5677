-- Cytopenia nadir and recovery for each test in $tests (a list) over the graded results
-- (safety_lab_results.sql), per test and subject dosed with the agent who has a result of it
-- on or after that dose: the baseline value; the nadir, the lowest value on or after the first
-- dose (the earliest if repeated); when the nadir is grade >= 2, the day of the first later
-- result at grade <= 1 (NULL: not recovered). One pass over the results for all the tests.
WITH results AS (
    SELECT * FROM graded WHERE list_contains($tests, test) AND value IS NOT NULL
),
nadir AS (
    -- the row with the lowest (value, collected_at): a grouped arg_min, which is several times quicker
    -- than ranking every row with a window
    SELECT test, subject_id, lowest.level, lowest.phase, lowest.unit, lowest.value AS nadir_value,
           lowest.agent_day AS nadir_day, lowest.grade AS nadir_grade, lowest.collected_at AS nadir_at
    FROM (SELECT test, subject_id,
                 arg_min({'level': level, 'phase': phase, 'unit': unit, 'value': value, 'agent_day': agent_day,
                          'grade': grade, 'collected_at': collected_at}, (value, collected_at)) AS lowest
          FROM results
          WHERE agent_day >= 0
          GROUP BY test, subject_id)
),
baseline AS (
    SELECT test, subject_id, value AS baseline_value FROM results WHERE baseline
),
recovery AS (
    SELECT n.test, n.subject_id, min(r.agent_day) AS first_recovery_day
    FROM nadir n
    JOIN results r ON r.test = n.test AND r.subject_id = n.subject_id AND r.collected_at > n.nadir_at
    WHERE r.grade <= 1
    GROUP BY n.test, n.subject_id
)
SELECT n.test, n.subject_id, n.level, n.phase, n.unit, b.baseline_value, n.nadir_value, n.nadir_day,
       n.nadir_grade,
       CASE WHEN n.nadir_grade >= 2 THEN r.first_recovery_day END AS recovery_day,
       CASE WHEN n.nadir_grade IS NULL OR n.nadir_grade < 2 THEN 'no grade ≥2'
            WHEN r.first_recovery_day IS NULL THEN 'not recovered'
            ELSE 'day ' || r.first_recovery_day END AS recovery
FROM nadir n
LEFT JOIN baseline b USING (test, subject_id)
LEFT JOIN recovery r USING (test, subject_id)
ORDER BY n.test, n.subject_id

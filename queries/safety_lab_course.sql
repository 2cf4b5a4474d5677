-- Graded results (safety_lab_results.sql) of the tests in $tests with a value,
-- from day $first_day to day $last_day after the agent's first dose.
SELECT subject_id, level, test, agent_day, value, unit, ref_low, grade
FROM graded
WHERE list_contains($tests, test) AND value IS NOT NULL AND agent_day BETWEEN $first_day AND $last_day
ORDER BY subject_id, test, collected_at

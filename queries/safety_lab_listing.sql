-- Graded results (safety_lab_results.sql) at grade >= $min_grade, by level,
-- subject and time.
SELECT subject_id, level, phase, test, collected_at, agent_day, value, unit, xuln, grade, grade_source
FROM graded
WHERE grade >= $min_grade
ORDER BY level, subject_id, collected_at, test

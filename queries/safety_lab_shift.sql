-- Subjects per test, level, baseline grade and worst post-baseline grade, over
-- the graded results (safety_lab_results.sql): subjects with a graded
-- post-baseline result; baseline_grade NULL when the baseline had no grade.
WITH graded_results AS (
    SELECT subject_id, test, level, grade, baseline, post_baseline FROM graded WHERE grade IS NOT NULL
),
baseline AS (
    SELECT subject_id, test, grade AS baseline_grade FROM graded_results WHERE baseline
),
worst AS (
    SELECT subject_id, test, level, max(grade) AS worst_grade
    FROM graded_results
    WHERE post_baseline
    GROUP BY subject_id, test, level
)
SELECT test, level, baseline_grade, worst_grade, count(*) AS n
FROM worst
LEFT JOIN baseline USING (subject_id, test)
GROUP BY test, level, baseline_grade, worst_grade
ORDER BY test, level, baseline_grade NULLS LAST, worst_grade

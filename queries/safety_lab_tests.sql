-- Per category and test of the graded results ($graded: safety_lab_results.sql):
-- results, results graded by the dashboard (no reported grade), graded results.
SELECT category, test, count(*) AS results,
       count(*) FILTER (WHERE grade_source = 'CTCAE v5 from value') AS derived,
       count(grade) AS graded
FROM graded
GROUP BY category, test
ORDER BY category, test

-- eDISH: per subject, the peak ALT, AST and total bilirubin x ULN on or after
-- the first dose (not necessarily on the same day), over the graded results
-- (safety_lab_results.sql); subjects with both an ALT and a bilirubin peak.
SELECT subject_id, level, phase,
       max(xuln) FILTER (WHERE test = 'ALT') AS peak_alt_xuln,
       max(xuln) FILTER (WHERE test = 'AST') AS peak_ast_xuln,
       max(xuln) FILTER (WHERE test = 'Bilirubin') AS peak_bili_xuln
FROM graded
WHERE after_first_dose AND xuln IS NOT NULL AND test IN ('ALT', 'AST', 'Bilirubin')
GROUP BY subject_id, level, phase
HAVING peak_alt_xuln IS NOT NULL AND peak_bili_xuln IS NOT NULL
ORDER BY subject_id, level, phase

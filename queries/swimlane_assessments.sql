-- RECIST time points done by $as_of (the baseline has no overall response).
SELECT subject_id, assessment_date, target_sum_mm, new_lesions, nontarget_response, overall_response
FROM tumor_assessments
WHERE study_id = $study_id AND assessment_date <= $as_of
ORDER BY subject_id, assessment_date

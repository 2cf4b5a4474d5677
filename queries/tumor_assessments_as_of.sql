-- RECIST time points done by $as_of, of one subject or (NULL) all (the baseline has no overall response).
SELECT subject_id, assessment_date, target_sum_mm, new_lesions, nontarget_response, overall_response
FROM tumor_assessments
WHERE study_id = $study_id AND assessment_date <= $as_of
  AND ($subject_id IS NULL OR subject_id = $subject_id)
ORDER BY subject_id, assessment_date

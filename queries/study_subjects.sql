-- The subjects enrolled in a study in this data cut (what the review status counts), in id order.
SELECT subject_id
FROM subjects
WHERE study_id = $study_id AND enrollment_date IS NOT NULL
ORDER BY subject_id

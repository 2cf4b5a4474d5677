-- Study-level counts as of $as_of. A subject counts as screened from the
-- screening date (or, lacking one, the enrollment date).
SELECT count(CASE WHEN coalesce(screening_date, enrollment_date) <= $as_of THEN 1 END) AS screened,
       count(CASE WHEN enrollment_date IS NULL AND screening_date <= $as_of THEN 1 END) AS screen_failures,
       count(CASE WHEN enrollment_date <= $as_of THEN 1 END) AS enrolled,
       count(CASE WHEN death_date <= $as_of THEN 1 END) AS deaths
FROM subjects
WHERE study_id = $study_id

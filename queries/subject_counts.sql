-- Study-level counts as of $as_of. A subject counts as screened from the
-- screening date (or, lacking one, the enrollment date).
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
known_subjects AS (
    -- include: known_subjects
)
SELECT count(CASE WHEN coalesce(screening_date, enrollment_date) <= $as_of THEN 1 END) AS screened,
       count(CASE WHEN enrollment_date IS NULL AND screening_date <= $as_of THEN 1 END) AS screen_failures,
       count(CASE WHEN enrollment_date <= $as_of THEN 1 END) AS enrolled,
       count(death_date) AS deaths
FROM known_subjects

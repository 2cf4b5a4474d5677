-- Studies by enrolled subjects, most first, with one enrolled subject to open on the profile page
-- (python -m smc bench measures the biggest and a typical one).
SELECT st.study_id,
       count(su.enrollment_date) AS enrolled,
       min(su.subject_id) FILTER (WHERE su.enrollment_date IS NOT NULL) AS first_subject
FROM studies st
LEFT JOIN subjects su USING (study_id)
GROUP BY st.study_id
ORDER BY enrolled DESC, st.study_id

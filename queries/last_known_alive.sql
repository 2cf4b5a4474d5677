-- The dates that say each enrolled subject of $study_id was alive, as known on $as_of:
-- last_contact_date if recorded by then, and the latest dated record on or before $as_of
-- (a dose, a tumor assessment, a lab sample, an AE onset or resolution).
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
known_subjects AS (
    -- include: known_subjects
),
records AS (
    SELECT subject_id, admin_date AS record_date FROM administrations WHERE study_id = $study_id
    UNION ALL SELECT subject_id, end_date FROM administrations WHERE study_id = $study_id
    UNION ALL SELECT subject_id, assessment_date FROM tumor_assessments WHERE study_id = $study_id
    UNION ALL SELECT subject_id, CAST(collected_at AS DATE) FROM lab_results WHERE study_id = $study_id
    UNION ALL SELECT subject_id, onset_date FROM adverse_events WHERE study_id = $study_id
    UNION ALL SELECT subject_id, end_date FROM adverse_events WHERE study_id = $study_id
), last_record AS (
    SELECT subject_id, max(record_date) AS last_record_date
    FROM records
    WHERE record_date <= $as_of
    GROUP BY subject_id
)
SELECT s.subject_id, s.last_contact_date, r.last_record_date
FROM known_subjects s LEFT JOIN last_record r USING (subject_id)
WHERE s.enrollment_date <= $as_of
ORDER BY s.subject_id

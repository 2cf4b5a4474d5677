-- AEs with onset by $as_of; an end date after $as_of is not yet known.
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
known_adverse_events AS (
    -- include: known_adverse_events
)
SELECT subject_id, ae_seq, ae_spid, term, soc, onset_date, end_date, grade, serious, related, dlt, outcome
FROM known_adverse_events
ORDER BY subject_id, onset_date, ae_seq

-- AEs with onset by $as_of; an end date after $as_of is not yet known.
SELECT subject_id, ae_seq, term, soc, onset_date,
       CASE WHEN end_date <= $as_of THEN end_date END AS end_date,
       grade, serious, related, dlt, outcome
FROM adverse_events
WHERE study_id = $study_id AND onset_date <= $as_of
ORDER BY subject_id, onset_date, ae_seq

-- AEs with onset by $as_of of subjects enrolled by then (one subject, or NULL: all). An AE is treatment-
-- emergent when its onset is on or after the first dose of any study treatment;
-- `day` counts from that dose (0 = the day of first dose). An end date or an
-- outcome recorded after $as_of was not yet known.
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
known_adverse_events AS (
    -- include: known_adverse_events
),
first_doses AS (
    -- include: first_doses
)
SELECT e.subject_id, s.dose_level AS level, s.phase, e.ae_seq, e.ae_spid, e.term,
       coalesce(e.soc, 'SOC not coded') AS soc,
       e.onset_date, e.end_date, e.grade, e.serious, e.related, e.dlt,
       CASE WHEN e.ends_after_as_of THEN 'Ongoing on the as-of date' ELSE e.outcome END AS outcome,
       e.action_taken,
       coalesce(e.onset_date >= f.first_dose_date, false) AS treatment_emergent,
       datediff('day', f.first_dose_date, e.onset_date) AS day
FROM known_adverse_events e
JOIN subjects s USING (study_id, subject_id)
LEFT JOIN first_doses f USING (subject_id)
WHERE s.enrollment_date <= $as_of
  AND ($subject_id IS NULL OR e.subject_id = $subject_id)
ORDER BY s.dose_level, e.subject_id, e.onset_date, e.ae_seq

-- AEs with onset by $as_of of subjects enrolled by then (one subject, or NULL: all). An AE is treatment-
-- emergent when its onset is on or after the first dose of any study treatment;
-- `day` counts from that dose (0 = the day of first dose). An end date or an
-- outcome recorded after $as_of was not yet known.
WITH first_dose AS (
    SELECT subject_id, min(admin_date) AS first_dose_date
    FROM administrations
    WHERE study_id = $study_id AND admin_date <= $as_of
    GROUP BY subject_id
)
SELECT e.subject_id, s.dose_level AS level, s.phase, e.ae_seq, e.term,
       coalesce(e.soc, 'SOC not coded') AS soc,
       e.onset_date,
       CASE WHEN e.end_date <= $as_of THEN e.end_date END AS end_date,
       e.grade, e.serious, e.related, e.dlt,
       CASE WHEN e.end_date > $as_of THEN 'Ongoing on the as-of date' ELSE e.outcome END AS outcome,
       e.action_taken,
       coalesce(e.onset_date >= f.first_dose_date, false) AS treatment_emergent,
       datediff('day', f.first_dose_date, e.onset_date) AS day
FROM adverse_events e
JOIN subjects s USING (study_id, subject_id)
LEFT JOIN first_dose f USING (subject_id)
WHERE e.study_id = $study_id AND e.onset_date <= $as_of AND s.enrollment_date <= $as_of
  AND ($subject_id IS NULL OR e.subject_id = $subject_id)
ORDER BY s.dose_level, e.subject_id, e.onset_date, e.ae_seq

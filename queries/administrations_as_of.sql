-- Administrations given by $as_of, of one subject or (NULL) all (a dosing period is cut at $as_of).
SELECT subject_id, agent, admin_date,
       CASE WHEN end_date > $as_of THEN $as_of ELSE end_date END AS end_date,
       dose, unit, route, cycle, day
FROM administrations
WHERE study_id = $study_id AND admin_date <= $as_of
  AND ($subject_id IS NULL OR subject_id = $subject_id)
ORDER BY subject_id, admin_date

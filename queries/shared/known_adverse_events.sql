-- known_adverse_events: the adverse events with onset by the as-of date of the studies of `cut`
-- (study_id, as_of), which the including query defines, as known on that date: an end date after it
-- was not yet recorded (NULL); ends_after_as_of is true for those events, whose outcome was not known.
SELECT e.* REPLACE (CASE WHEN e.end_date <= cut.as_of THEN e.end_date END AS end_date),
       e.end_date > cut.as_of AS ends_after_as_of
FROM adverse_events e
JOIN cut ON cut.study_id = e.study_id AND e.onset_date <= cut.as_of

-- first_doses: each subject's first dose among the doses given by the as-of date, of any study treatment
-- (first_dose_date) and of the study's agent (first_agent_dose_date; NULL while only other treatments
-- were given), for the studies of `cut` (study_id, as_of), which the including query defines.
-- One row per dosed subject: a subject not dosed by the as-of date has none.
SELECT a.study_id, a.subject_id, min(a.admin_date) AS first_dose_date,
       min(a.admin_date) FILTER (WHERE a.agent = st.agent) AS first_agent_dose_date
FROM administrations a
JOIN cut ON cut.study_id = a.study_id AND a.admin_date <= cut.as_of
JOIN studies st ON st.study_id = a.study_id
GROUP BY a.study_id, a.subject_id

-- known_subjects: the subjects of the studies of `cut` (study_id, as_of), which the including query
-- defines, as known on the as-of date: an end of treatment, end of study, death or last contact dated
-- after it had not happened yet, so the date and its reason or cause are NULL. Every subject, enrolled
-- or not; enrollment and assignment as recorded.
SELECT s.* REPLACE (
           CASE WHEN s.off_treatment_date <= cut.as_of THEN s.off_treatment_date END AS off_treatment_date,
           CASE WHEN s.off_treatment_date <= cut.as_of THEN s.off_treatment_reason END AS off_treatment_reason,
           CASE WHEN s.off_study_date <= cut.as_of THEN s.off_study_date END AS off_study_date,
           CASE WHEN s.off_study_date <= cut.as_of THEN s.off_study_reason END AS off_study_reason,
           CASE WHEN s.death_date <= cut.as_of THEN s.death_date END AS death_date,
           CASE WHEN s.death_date <= cut.as_of THEN s.death_cause END AS death_cause,
           CASE WHEN s.last_contact_date <= cut.as_of THEN s.last_contact_date END AS last_contact_date)
FROM subjects s
JOIN cut ON cut.study_id = s.study_id

-- Grade 3 or worse adverse events, worst first
SELECT a.study_id, a.subject_id, s.dose_level AS level, a.term, a.soc, a.grade, a.onset_date, a.end_date,
       a.serious, a.related, a.dlt
FROM adverse_events a JOIN subjects s USING (study_id, subject_id)
WHERE a.grade >= 3
ORDER BY a.grade DESC, a.study_id, a.onset_date

-- Every subject of the study with its site: who an investigator's subject scope admits (smc.access.scope).
SELECT subject_id, site_id FROM subjects WHERE study_id = $study_id ORDER BY subject_id

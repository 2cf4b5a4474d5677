-- Every study's stages in stage order (a study without rows has one stage: studies.agent and dlt_window_days).
SELECT study_id, stage, stage_order, agent, dlt_window_days, start_level, ceiling_stage
FROM stages
ORDER BY study_id, stage_order

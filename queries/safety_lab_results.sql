-- Lab results of the categories in $categories (a list) collected by $as_of of
-- subjects enrolled by then, graded and flagged for the Safety labs page
-- (smc/labs.py states the rules):
-- - grade: the reported grade, else CTCAE v5 from value and reference range by
--   the rules in $rules (test, low, cut1..cut3: smc.ctcae.GRADINGS) and
--   $unit_factors (test, unit, factor: smc.ctcae.UNIT_FACTORS); grade_source
--   says which;
-- - baseline: the subject's last result of the test collected on or before the
--   day of the first dose of any study treatment; post_baseline: later results
--   collected on or after that day; after_first_dose: collected on or after it;
-- - agent_day: days from the first dose of the study's agent; xuln: value / ULN.
WITH cut AS (SELECT $study_id AS study_id, $as_of::DATE AS as_of),
first_doses AS (
    -- include: first_doses
),
rules AS (SELECT unnest($rules, recursive := true)),
unit_factors AS (SELECT unnest($unit_factors, recursive := true)),
results AS (
    SELECT l.rowid AS result_id, l.subject_id, s.dose_level AS level, s.phase, l.category, l.test, l.collected_at, l.value, l.unit,
           l.ref_low, l.ref_high, l.grade AS reported_grade, l.value / l.ref_high AS xuln,
           datediff('day', d.first_agent_dose_date, l.collected_at::DATE) AS agent_day,
           coalesce(l.collected_at::DATE >= d.first_dose_date, false) AS after_first_dose,
           coalesce(l.collected_at::DATE <= d.first_dose_date, false) AS by_first_dose,
           r.low, r.cut1, r.cut2, r.cut3,
           CASE WHEN trim(coalesce(l.unit, '')) = '' THEN 1.0 ELSE u.factor END AS factor
    FROM lab_results l
    JOIN subjects s USING (study_id, subject_id)
    LEFT JOIN first_doses d USING (subject_id)
    LEFT JOIN rules r ON r.test = l.test
    LEFT JOIN unit_factors u ON u.test = l.test AND u.unit = trim(l.unit)
    WHERE l.study_id = $study_id AND list_contains($categories, l.category)
      AND l.collected_at::DATE <= $as_of AND s.enrollment_date <= $as_of
),
derived AS (
    SELECT *,
           CASE WHEN cut1 IS NULL OR value IS NULL OR isnan(value) THEN NULL
                WHEN low THEN CASE
                    WHEN ref_low IS NULL OR factor IS NULL THEN NULL
                    WHEN value >= ref_low THEN 0
                    ELSE 1 + (value * factor < cut1)::INT + (value * factor < cut2)::INT
                           + coalesce((value * factor < cut3)::INT, 0) END
                ELSE CASE
                    WHEN ref_high IS NULL THEN NULL
                    WHEN value <= ref_high THEN 0
                    ELSE 1 + (value > cut1 * ref_high)::INT + (value > cut2 * ref_high)::INT
                           + coalesce((value > cut3 * ref_high)::INT, 0) END
           END AS derived_grade
    FROM results
),
baselines AS (
    -- one row per subject and test (two results at the same time: the first loaded)
    SELECT subject_id, test, result_id AS baseline_id, collected_at AS baseline_at
    FROM results
    WHERE by_first_dose
    QUALIFY row_number() OVER (PARTITION BY subject_id, test ORDER BY collected_at DESC, result_id) = 1
)
SELECT subject_id, level, phase, category, test, collected_at, value, unit, ref_low, ref_high,
       coalesce(reported_grade, derived_grade) AS grade,
       CASE WHEN reported_grade IS NOT NULL THEN 'reported'
            WHEN derived_grade IS NOT NULL THEN 'CTCAE v5 from value' ELSE '' END AS grade_source,
       xuln, agent_day, after_first_dose,
       coalesce(result_id = b.baseline_id, false) AS baseline,
       after_first_dose AND collected_at > coalesce(b.baseline_at, TIMESTAMP '-infinity') AS post_baseline
FROM derived
LEFT JOIN baselines b USING (subject_id, test)

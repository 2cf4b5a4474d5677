-- The records of one table in two data cuts (cut_from, cut_to: table_records.sql of each), matched on the
-- table's record key ({key}: a struct_pack of the key columns, from smc.store.contract.RECORD_KEYS). A key that
-- appears twice in either cut is left out on both sides, neither added, removed nor changed: duplicate_keys.sql
-- reports it.
-- kind: added (only in cut_to), removed (only in cut_from) or changed (in both, some column differs).
WITH old AS (
    SELECT {key} AS record_key, r AS record FROM cut_from r
), new AS (
    SELECT {key} AS record_key, r AS record FROM cut_to r
), repeated AS (  -- a key twice in either cut: its records in both cuts are left unmatched
    SELECT record_key FROM old GROUP BY ALL HAVING count(*) > 1
    UNION
    SELECT record_key FROM new GROUP BY ALL HAVING count(*) > 1
), old_unique AS (
    SELECT * FROM old o WHERE NOT EXISTS (SELECT 1 FROM repeated r WHERE r.record_key IS NOT DISTINCT FROM o.record_key)
), new_unique AS (
    SELECT * FROM new n WHERE NOT EXISTS (SELECT 1 FROM repeated r WHERE r.record_key IS NOT DISTINCT FROM n.record_key)
)
SELECT CASE WHEN o.record_key IS NULL THEN 'added' WHEN n.record_key IS NULL THEN 'removed' ELSE 'changed' END
           AS kind,
       coalesce(o.record_key, n.record_key) AS record_key,
       o.record AS old,
       n.record AS new
FROM old_unique o
FULL JOIN new_unique n ON o.record_key IS NOT DISTINCT FROM n.record_key
WHERE o.record IS DISTINCT FROM n.record

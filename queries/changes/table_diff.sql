-- The records of one table in two data cuts (cut_from, cut_to: table_records.sql of each, numbered by _row),
-- matched on the table's record key, filled in from smc.store.contract.RECORD_KEYS, never from input: {keys}
-- (the key columns), {same_key} (o.<key> IS NOT DISTINCT FROM n.<key>, for each), {differs} (o.<column> IS
-- DISTINCT FROM n.<column>, for every other contract column). A key that appears twice in either cut is left
-- out on both sides, neither added, removed nor changed: duplicate_keys.sql reports it.
-- kind: added (only in cut_to), removed (only in cut_from) or changed (in both, some column differs); the
-- records' _row in each cut, for the caller to take.
WITH repeated AS (
    SELECT {keys} FROM cut_from GROUP BY ALL HAVING count(*) > 1
    UNION
    SELECT {keys} FROM cut_to GROUP BY ALL HAVING count(*) > 1
), o AS (
    SELECT * FROM cut_from o WHERE NOT EXISTS (SELECT 1 FROM repeated n WHERE {same_key})
), n AS (
    SELECT * FROM cut_to n WHERE NOT EXISTS (SELECT 1 FROM repeated o WHERE {same_key})
)
SELECT CASE WHEN o._row IS NULL THEN 'added' WHEN n._row IS NULL THEN 'removed' ELSE 'changed' END AS kind,
       o._row AS old_row,
       n._row AS new_row
FROM o
FULL JOIN n ON {same_key}
WHERE o._row IS NULL OR n._row IS NULL OR {differs}

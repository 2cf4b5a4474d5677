-- Record keys that appear more than once in one data cut's table ({key}: a struct_pack of the key columns, as
-- in table_diff.sql), in either cut: such records cannot be matched across cuts and are reported, not guessed.
SELECT 'from' AS cut, {key} AS record_key, count(*) AS records
FROM cut_from r
GROUP BY ALL
HAVING count(*) > 1
UNION ALL
SELECT 'to' AS cut, {key} AS record_key, count(*) AS records
FROM cut_to r
GROUP BY ALL
HAVING count(*) > 1
ORDER BY cut, records DESC

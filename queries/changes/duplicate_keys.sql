-- Record keys that appear more than once in one data cut's table ({key} as in table_diff.sql): such records
-- cannot be matched across cuts and are reported, not guessed.
SELECT {key} AS record_key, count(*) AS records
FROM cut_rows r
GROUP BY ALL
HAVING count(*) > 1
ORDER BY records DESC

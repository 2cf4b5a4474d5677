-- One contract table's records of one study, as they are in one data cut (smc.analysis.changes).
-- {columns} and {table} are filled in from the data contract (smc.store.contract), never from input; a column
-- this cut's file predates is read as NULL.
SELECT {columns}
FROM {table}
WHERE study_id = $study_id

-- Every table and column of the data cut with the contract's description, for the schema browser.
SELECT c.table_name, t.comment AS table_comment, c.column_name, c.data_type, c.comment AS column_comment
FROM duckdb_columns() c JOIN duckdb_tables() t USING (database_name, schema_name, table_name)
WHERE c.schema_name = 'main' AND NOT c.internal
ORDER BY t.table_oid, c.column_index

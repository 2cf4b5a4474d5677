-- Rows per contract table, for the benchmark's header.
SELECT table_name, estimated_size AS rows
FROM duckdb_tables()
WHERE table_name IN ('studies', 'subjects', 'adverse_events', 'lab_results', 'tumor_assessments', 'administrations')
ORDER BY table_name

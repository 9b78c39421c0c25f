/* The columns of one table of the current schema, in order, with their types (make copy-registry).
   DuckDB and PostgreSQL both implement this information_schema view. */
SELECT column_name, data_type
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = {{ table }}
ORDER BY ordinal_position

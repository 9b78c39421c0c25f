/* The primary key columns of one table of the current schema, in key order (make copy-registry).
   DuckDB and PostgreSQL both implement these information_schema views. */
SELECT kcu.column_name
FROM information_schema.table_constraints tc
JOIN information_schema.key_column_usage kcu
  ON kcu.constraint_name = tc.constraint_name
 AND kcu.table_name = tc.table_name
 AND kcu.table_schema = tc.table_schema
WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema() AND tc.table_name = {{ table }}
ORDER BY kcu.ordinal_position

/* The migration runner's own record (include/db/migrations.py): one row per migration applied,
   with the checksum of its file, so an applied file that was edited afterwards is refused. */
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp
)

#!/usr/bin/env bash
# The registry's own role and database. The postgres image's entrypoint runs this once, as
# POSTGRES_USER, the first time the container starts on an empty volume (docker-compose.yaml mounts
# it as /docker-entrypoint-initdb.d/10-registry-db.sh). The role `mri` logs in with MRI_DB_PASSWORD
# and owns the database `mri` and nothing else: no superuser, no CREATEDB, no CREATEROLE, no
# replication, and no way into Airflow's metadata database or `postgres`.
#
# It can be run again, e.g. on a volume made before it existed, where `mri` belonged to the
# superuser: it then hands the registry's tables and views to the role, and resets its password.
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-registry-db.sh
#
# Sourced by the entrypoint (it is not executable in the container): no `set`, no `exit` here.

: "${MRI_DB_PASSWORD:?MRI_DB_PASSWORD is not set: see deploy/env.example}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    --set=mri_password="$MRI_DB_PASSWORD" --set=metadata_db="${POSTGRES_DB:-postgres}" <<'SQL'
SELECT 'CREATE ROLE mri' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mri') \gexec
ALTER ROLE mri WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'mri_password';
SELECT 'CREATE DATABASE mri OWNER mri' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mri') \gexec
ALTER DATABASE mri OWNER TO mri;
REVOKE ALL ON DATABASE mri FROM PUBLIC;
-- Only their owner (the superuser) connects to Airflow's metadata database and to `postgres`.
REVOKE ALL ON DATABASE :"metadata_db" FROM PUBLIC;
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
SQL

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname mri <<'SQL'
ALTER SCHEMA public OWNER TO mri;
-- Tables, views and free-standing sequences made before the role existed (sequences owned by a
-- column follow their table; indexes follow theirs).
DO $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT c.oid::regclass AS name,
               CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                              WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND c.relowner <> 'mri'::regrole
          AND NOT (c.relkind = 'S' AND EXISTS (
              SELECT FROM pg_depend d
              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO mri', item.kind, item.name);
    END LOOP;
END
$$;
SQL

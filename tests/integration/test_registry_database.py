"""The backend layer and the migrations on a DuckDB file and on a real PostgreSQL 15."""

import threading

import pytest

from include.db import BACKENDS, DatabaseUnavailableError, get_database
from include.db.migrations import MigrationError, apply_migrations, discover

REGISTRY_TABLES = {"images", "quality_runs", "models", "model_results", "schema_migrations"}


def table_names(db):
    rows = db.fetch_all("SELECT table_name FROM information_schema.tables WHERE table_name NOT LIKE 'pg_%'")
    return {name for (name,) in rows}


def test_migrations_applied_twice_apply_once(db_conn_id):
    db = get_database(db_conn_id)
    versions = [m.version for m in discover()]

    assert apply_migrations(db) == versions
    assert apply_migrations(db) == []
    assert REGISTRY_TABLES <= table_names(db)
    assert [v for (v,) in db.fetch_all("SELECT version FROM schema_migrations ORDER BY version")] == versions


def test_editing_an_applied_migration_is_refused(db_conn_id, tmp_path):
    db = get_database(db_conn_id)
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (id TEXT PRIMARY KEY);")
    apply_migrations(db, tmp_path)
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (id TEXT PRIMARY KEY, x TEXT);")

    with pytest.raises(MigrationError, match="was edited after it was applied.*add the next one"):
        apply_migrations(db, tmp_path)


def test_failed_migration_leaves_nothing_half_applied(db_conn_id, tmp_path):
    db = get_database(db_conn_id)
    (tmp_path / "0001_broken.sql").write_text("CREATE TABLE half (id TEXT); CREATE TABLE broken (id NOSUCHTYPE);")

    with pytest.raises(Exception, match="(?i)nosuchtype"):  # each driver has its own error class
        apply_migrations(db, tmp_path)
    assert "half" not in table_names(db)
    (tmp_path / "0001_broken.sql").write_text("CREATE TABLE half (id TEXT);")
    assert apply_migrations(db, tmp_path) == [1]


def test_bad_migration_file_name_is_rejected(tmp_path):
    (tmp_path / "add_things.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNNN_<lowercase_words>.sql"):
        discover(tmp_path)


def test_concurrent_migration_runners_on_postgres_apply_each_version_once(postgres_conn_id):
    errors = []

    def run():
        try:
            apply_migrations(get_database(postgres_conn_id))
        except Exception as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    rows = get_database(postgres_conn_id).fetch_all("SELECT version FROM schema_migrations")
    assert sorted(v for (v,) in rows) == [m.version for m in discover()]


def test_double_precision_and_json_columns_round_trip(db_conn_id):
    db = get_database(db_conn_id)
    apply_migrations(db)
    p = db.placeholder
    with db.transaction() as cur:
        cur.execute(
            f"INSERT INTO model_results (result_id, model_id, test_snapshot, accuracy, confusion_matrix) "
            f"VALUES ({p}, {p}, {p}, {p}, {p})",
            ("r1", "m1", "s1", 0.123456789012, "[[3, 1], [0, 4]]"),
        )
    [(accuracy, matrix)] = db.fetch_all("SELECT accuracy, CAST(confusion_matrix AS TEXT) FROM model_results")
    assert accuracy == 0.123456789012  # REAL would have lost digits
    assert matrix.replace(" ", "") == "[[3,1],[0,4]]"


def test_backend_facts_come_from_the_connection_type(db_conn_id):
    db = get_database(db_conn_id)
    assert type(db) is BACKENDS[db.connection.conn_type]
    assert db.pool_slots == (1 if db.conn_type == "duckdb" else 32)


def test_unknown_conn_id_names_the_variable_and_the_fix():
    with pytest.raises(
        DatabaseUnavailableError,
        match=r"MRI_DB_CONN_ID 'nope' is not a defined Airflow connection.*AIRFLOW_VAR_MRI_DB_CONN_ID",
    ):
        get_database("nope")


def test_unsupported_conn_type_lists_the_supported_ones(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_LEGACY", "sqlite:///tmp/x.db")
    with pytest.raises(DatabaseUnavailableError, match=r"conn_type 'sqlite'; supported: duckdb, postgres"):
        get_database("legacy")


def test_unreachable_postgres_fails_with_the_variable_and_the_fix(monkeypatch):
    from tests.support.postgres import free_port

    monkeypatch.setenv("AIRFLOW_CONN_DOWN_PG", f"postgres://mri@127.0.0.1:{free_port()}/mri")
    db = get_database("down_pg")
    with pytest.raises(
        DatabaseUnavailableError,
        match=r"MRI_DB_CONN_ID 'down_pg' \(postgres at 127.0.0.1:\d+/mri\) cannot be opened: .*Start the database",
    ):
        apply_migrations(db)


def test_files_registered_before_pixel_hashes_are_still_compared_by_file_hash(db_conn_id, tmp_path):
    from include.config import MIGRATIONS_DIR
    from include.registry.records import write_records
    from tests.support.records import synthetic_records

    db = get_database(db_conn_id)
    for migration in sorted(MIGRATIONS_DIR.glob("000[1-7]_*.sql")):  # the schema before 0008
        (tmp_path / migration.name).write_text(migration.read_text())
    apply_migrations(db, tmp_path)
    [train] = synthetic_records(0, 1)
    # The same bytes in both splits, as the registry wrote them then: no pixel hash anywhere.
    with db.transaction() as cursor:
        cursor.execute(
            f"INSERT INTO images (content_hash, uri, split, label, bytes, status, first_seen_run_id) VALUES "
            f"({', '.join([db.placeholder] * 7)})",
            (train.content_hash, train.uri, "train", "glioma", 10, "registered", "old"),
        )
        for uri, split in ((train.uri, "train"), ("s3://bucket/raw/test/glioma (0).jpg", "test")):
            cursor.execute(
                "INSERT INTO image_files (uri, content_hash, split, run_id, label) VALUES "
                f"({', '.join([db.placeholder] * 5)})",
                (uri, train.content_hash, split, "old", "glioma"),
            )

    assert apply_migrations(db)[0] == 8
    write_records(db, synthetic_records(1, 2), "new")  # and a file registered after it

    assert db.fetch_all("SELECT pixel_key, content_hash, splits, files FROM leaked_images") == [
        (train.content_hash, train.content_hash, 2, 2)
    ]

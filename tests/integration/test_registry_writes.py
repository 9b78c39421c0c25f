"""The registry's write path under real concurrency and a real server restart (PostgreSQL 15)."""

import threading
import time

import psycopg2

from include.db import DatabaseUnavailableError, get_database
from include.db.migrations import apply_migrations
from include.registry.records import write_records
from tests.support.concurrency import most_at_once
from tests.support.records import run_writers
from tests.support.records import synthetic_records as records


def count(db, table="images") -> int:
    [(n,)] = db.fetch_all(f"SELECT COUNT(*) FROM {table}")
    return n


def test_sixteen_concurrent_writers_with_overlapping_batches_lose_and_duplicate_nothing(postgres_conn_id):
    db = get_database(postgres_conn_id)
    apply_migrations(db)
    writers, batch, step = 16, 2_000, 1_600  # each batch shares 400 files with the next

    exit_codes, spans = run_writers(postgres_conn_id, [(i * step, i * step + batch) for i in range(writers)], batch)

    assert exit_codes == [0] * writers
    assert most_at_once(spans) >= 2, "the writers ran one after another"
    expected = (writers - 1) * step + batch
    assert count(db) == expected and count(db, "image_files") == expected
    [(distinct,)] = db.fetch_all("SELECT COUNT(DISTINCT content_hash) FROM images")
    assert distinct == expected


def test_writing_a_batch_twice_adds_nothing(db_conn_id):
    db = get_database(db_conn_id)
    apply_migrations(db)
    write_records(db, records(0, 50), "run-1")
    write_records(db, records(0, 50) + records(0, 50), "run-2")
    assert count(db) == 50 and count(db, "image_files") == 50


def test_postgres_restart_mid_batch_leaves_no_partial_batch_and_a_retry_completes_it(postgres_server, postgres_conn_id):
    db = get_database(postgres_conn_id)
    apply_migrations(db)
    batch = records(0, 40_000)
    restarted = threading.Event()

    seen = []

    def restart_when_the_batch_is_in_flight():
        watcher = get_database(postgres_conn_id)
        while not restarted.is_set():
            # Not the watcher's own query (it names both tables too), and either write path: the
            # direct COPY into images or the staged ON CONFLICT insert.
            active = watcher.fetch_all(
                "SELECT query FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                "AND (query LIKE 'COPY images %' OR query LIKE '%staged_images%')"
            )
            if active:
                seen.append(active[0][0])
                postgres_server.restart()
                restarted.set()
            time.sleep(0.005)

    restarter = threading.Thread(target=restart_when_the_batch_is_in_flight, daemon=True)
    restarter.start()
    failures, errors = 0, []
    for _attempt in range(20):  # what Airflow's task retries do
        try:
            write_records(db, batch, "run-1")
            break
        except Exception as err:
            failures += 1
            errors.append(err)
            restarted.wait(timeout=30)
            while True:  # the server is back when it answers
                try:
                    rows_after_failure = count(db)
                    break
                except DatabaseUnavailableError:
                    time.sleep(0.2)
            assert rows_after_failure == 0, "a failed batch left part of its rows"
    restarted.set()

    assert failures >= 1, "the restart did not hit the batch in flight"
    assert seen and "pg_stat_activity" not in seen[0], f"the watcher restarted on its own query: {seen}"
    # The server's own error reaches Airflow, not a secondary one from rolling back a dead connection.
    assert all(isinstance(e, psycopg2.OperationalError) for e in errors), [repr(e) for e in errors]
    assert count(db) == len(batch) and count(db, "image_files") == len(batch)

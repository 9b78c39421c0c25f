"""Moving up keeps history: the registry's tables copied from a DuckDB file to a real PostgreSQL,
through the backend layer, idempotent, verified by counts and checksums."""

import datetime as dt
import json
import logging

import pytest

from include.db import get_database
from include.db.copy import CopyError, copy_registry, main, registry_tables
from include.db.migrations import apply_migrations

HOSTILE = "glioma (8)'); DROP TABLE images;--\twith a tab\nand a newline \\N and a backslash \\"
WHEN = dt.datetime(2026, 11, 27, 4, 11, 0, 123456, tzinfo=dt.UTC)


def fill(conn_id: str) -> dict[str, int]:
    """A small registry with every kind of value the schema holds; returns rows per table."""
    db = get_database(conn_id)
    apply_migrations(db)
    p = db.placeholder

    def insert(cursor, table: str, columns: list[str], rows: list[tuple]) -> None:
        marks = ", ".join([p] * len(columns))
        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    with db.transaction() as cursor:
        images = [
            (
                f"{i:064x}",
                f"s3://b/raw/train/{HOSTILE} {i}.jpg",
                "train",
                "glioma",
                256,
                256,
                "L",
                1000 + i,
                "registered",
                None,
                "run_1",
                WHEN,
            )
            for i in range(25)
        ]
        images.append(
            (
                "f" * 64,
                "s3://b/raw/train/empty.jpg",
                "train",
                None,
                None,
                None,
                None,
                0,
                "quarantined",
                "empty file",
                "run_1",
                WHEN,
            )
        )
        insert(
            cursor,
            "images",
            [
                "content_hash",
                "uri",
                "split",
                "label",
                "width",
                "height",
                "mode",
                "bytes",
                "status",
                "reason",
                "first_seen_run_id",
                "created_at",
            ],
            images,
        )
        insert(
            cursor,
            "image_files",
            ["uri", "content_hash", "split", "run_id", "registered_at"],
            [(uri, h, split, run, when) for h, uri, split, *_, run, when in images],
        )
        insert(
            cursor,
            "quality_runs",
            ["suite", "split", "run_id", "success", "statistics", "report_path"],
            [
                ("registry", split, f"gate_{n}", n % 2 == 0, json.dumps({"images": 25, "note": HOSTILE}), None)
                for split in ("train", "test")
                for n in range(3)
            ],
        )
        insert(
            cursor,
            "models",
            ["model_id", "base_model", "hyperparameters", "train_snapshot", "path", "stage"],
            [("m1", "config:resnet-18", json.dumps({"lr": 0.001, "epochs": 2}), "s" * 64, "/models/m1", "candidate")],
        )
        insert(
            cursor,
            "model_results",
            [
                "result_id",
                "model_id",
                "test_snapshot",
                "loss",
                "accuracy",
                "precision",
                "recall",
                "f1",
                "roc_auc",
                "confusion_matrix",
                "evaluated_at",
            ],
            [("r1", "m1", "t" * 64, 0.1 + 0.2, 0.875, None, 1 / 3, 0.5, 0.9, json.dumps([[7, 1], [1, 7]]), WHEN)],
        )
        insert(
            cursor,
            "snapshot_images",
            ["snapshot", "split", "content_hash", "label", "uri"],
            [("s" * 64, "train", f"{i:064x}", "glioma", f"s3://b/raw/train/{i}.jpg") for i in range(25)],
        )
    return {"images": 26, "image_files": 26, "quality_runs": 6, "models": 1, "model_results": 1, "snapshot_images": 25}


def test_registry_tables_are_every_table_the_migrations_create():
    tables = registry_tables()
    expected = ["images", "quality_runs", "models", "model_results", "image_files", "snapshot_images"]
    assert tables[: len(expected)] == expected
    assert "schema_migrations" not in tables and "leaked_images" not in tables  # bookkeeping, a view


def test_copy_from_duckdb_to_postgres_is_verified_and_idempotent_when_run_twice(duckdb_conn_id, postgres_conn_id):
    rows = fill(duckdb_conn_id)

    first = {r.table: r for r in copy_registry(duckdb_conn_id, postgres_conn_id)}
    second = {r.table: r for r in copy_registry(duckdb_conn_id, postgres_conn_id)}

    assert {t: r.copied for t, r in first.items() if t in rows} == rows
    assert all(r.verified and r.source_rows == r.target_rows for r in first.values())
    assert {t: r.copied for t, r in second.items()} == dict.fromkeys(first, 0)
    assert {t: (r.target_rows, r.target_checksum) for t, r in second.items()} == {
        t: (r.target_rows, r.source_checksum) for t, r in first.items()
    }
    target = get_database(postgres_conn_id)
    assert target.fetch_all("SELECT uri, created_at FROM images WHERE content_hash = %s", (f"{0:064x}",)) == [
        (f"s3://b/raw/train/{HOSTILE} 0.jpg", WHEN)
    ]
    [(statistics, success)] = target.fetch_all(
        "SELECT statistics, success FROM quality_runs WHERE split = 'test' AND run_id = 'gate_2'"
    )
    assert statistics == {"images": 25, "note": HOSTILE} and success is True
    assert target.fetch_all("SELECT loss, recall FROM model_results") == [(0.1 + 0.2, 1 / 3)]


def test_copy_keeps_rows_the_target_has_and_reports_them_when_they_differ(duckdb_conn_id, postgres_conn_id):
    fill(duckdb_conn_id)
    target = get_database(postgres_conn_id)
    apply_migrations(target)
    with target.transaction() as cursor:
        cursor.execute(
            "INSERT INTO models (model_id, base_model, hyperparameters, train_snapshot, path, stage) "
            "VALUES ('m1', 'config:resnet-18', '{}', 'other', '/elsewhere', 'candidate')"
        )

    results = {r.table: r for r in copy_registry(duckdb_conn_id, postgres_conn_id)}

    assert not results["models"].verified and results["models"].copied == 0
    assert all(r.verified for t, r in results.items() if t != "models")
    assert target.fetch_all("SELECT path, stage FROM models") == [("/elsewhere", "candidate")]


def test_make_copy_registry_prints_counts_and_checksums(duckdb_conn_id, postgres_conn_id, monkeypatch, caplog):
    fill(duckdb_conn_id)
    monkeypatch.setattr("sys.argv", ["copy", "--from", duckdb_conn_id, "--to", postgres_conn_id])

    with caplog.at_level(logging.INFO, logger="include.db.copy"):
        assert main() == 0

    table = [line for line in caplog.messages if line.startswith("| images |")]
    assert len(table) == 1 and table[0].split(" | ")[1:4] == ["26", "26", "26"]


def test_copy_refuses_the_same_connection_twice(duckdb_conn_id):
    with pytest.raises(RuntimeError, match="FROM and TO are both"):
        copy_registry(duckdb_conn_id, duckdb_conn_id)


def test_copy_from_a_registry_with_no_tables_names_the_connection(duckdb_conn_id, postgres_conn_id):
    with pytest.raises(RuntimeError, match=f"'{duckdb_conn_id}' .* has none of the registry tables"):
        copy_registry(duckdb_conn_id, postgres_conn_id)


def set_stages(conn_id: str, stages: dict[str, str]) -> None:
    """Give models these stages (adding a bare row for a model the registry lacks), migrations applied."""
    db = get_database(conn_id)
    apply_migrations(db)
    p = db.placeholder
    with db.transaction() as cursor:
        for model_id, stage in stages.items():
            cursor.execute(f"DELETE FROM models WHERE model_id = {p}", (model_id,))
            cursor.execute(
                "INSERT INTO models (model_id, base_model, hyperparameters, train_snapshot, path, stage) "
                f"VALUES ({p}, 'config:resnet-18', '{{}}', {p}, {p}, {p})",
                (model_id, "s" * 64, f"/models/{model_id}", stage),
            )


def row_counts(conn_id: str) -> dict[str, int]:
    db = get_database(conn_id)
    return {table: db.fetch_all(f"SELECT COUNT(*) FROM {table}")[0][0] for table in registry_tables()}


def test_copy_refuses_a_merge_that_leaves_two_production_models_before_writing_anything(
    duckdb_conn_id, postgres_conn_id, monkeypatch, caplog
):
    fill(duckdb_conn_id)
    set_stages(duckdb_conn_id, {"m1": "production"})
    set_stages(postgres_conn_id, {"m2": "production", "m3": "archived"})
    before = row_counts(postgres_conn_id)

    with pytest.raises(CopyError) as refused:
        copy_registry(duckdb_conn_id, postgres_conn_id)
    monkeypatch.setattr("sys.argv", ["copy", "--from", duckdb_conn_id, "--to", postgres_conn_id])
    with caplog.at_level(logging.INFO, logger="include.db.copy"):
        assert main() != 0

    message = str(refused.value)
    assert "models" in message and "m1" in message and "m2" in message and "production" in message
    assert message in caplog.text and "Every source row is in" not in caplog.text
    assert row_counts(postgres_conn_id) == before  # nothing written: not an image, not a result
    assert sorted(get_database(postgres_conn_id).fetch_all("SELECT model_id, stage FROM models")) == [
        ("m2", "production"),
        ("m3", "archived"),
    ]


def test_copy_refuses_a_model_whose_stage_differs_between_source_and_target(duckdb_conn_id, postgres_conn_id):
    fill(duckdb_conn_id)
    set_stages(duckdb_conn_id, {"m1": "production"})
    set_stages(postgres_conn_id, {"m1": "archived"})
    before = row_counts(postgres_conn_id)

    with pytest.raises(CopyError) as refused:
        copy_registry(duckdb_conn_id, postgres_conn_id)

    message = str(refused.value)
    assert "models" in message and "m1" in message and "archived" in message and "production" in message
    assert row_counts(postgres_conn_id) == before


def test_copy_into_a_target_whose_production_model_is_the_sources_is_allowed(duckdb_conn_id, postgres_conn_id):
    """The same production model on both sides (a second copy, or a copy back) breaks nothing."""
    fill(duckdb_conn_id)
    set_stages(duckdb_conn_id, {"m1": "production", "m0": "archived"})
    copy_registry(duckdb_conn_id, postgres_conn_id)

    results = copy_registry(duckdb_conn_id, postgres_conn_id)

    assert all(r.verified for r in results)
    assert get_database(postgres_conn_id).fetch_all("SELECT model_id FROM models WHERE stage = 'production'") == [
        ("m1",)
    ]

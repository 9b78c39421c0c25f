"""train_model, test_baseline_model and test_fine_tuned_model under `dag.test()` on DuckDB and a
real PostgreSQL: gated snapshots in, bundles, `models` rows and append-only `model_results` out.

A tiny ResNet (saved as a local checkpoint: the folder source) and a handful of toy images keep
each run to seconds; learning itself is measured on the phantom set (README) and tested in
tests/unit/test_ml_core.py.
"""

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.utils.state import DagRunState, TaskInstanceState

from include.config import settings
from include.db import DatabaseUnavailableError, get_database
from include.ml import learned_baseline
from include.ml.bundle import load_model, missing_files, read_metadata
from include.ml.data import read_images
from include.ml.evaluate import read_predictions
from include.registry.snapshots import load_snapshot
from include.storage import get_storage
from include.training.dags import build_test_baseline_dag, build_test_fine_tuned_dag, build_train_model_dag
from include.wiring.datasets import GATE_PASSED, MODEL_TRAINED
from tests.support.concurrency import holding_duckdb_file
from tests.support.environment import training_registry
from tests.support.metadata import run_task_again
from tests.support.records import register_and_gate

LABELS = ("glioma", "meningioma")


@pytest.fixture
def ml(db_conn_id, tmp_path, monkeypatch):
    """Settings for the backend under test, a local store, a tiny base checkpoint, short training:
    two epochs, a sweep of two."""
    sweep = [{"learning_rate": 0.01}, {"learning_rate": 0.005, "validation_fraction": 0.0}]
    return training_registry(db_conn_id, tmp_path, monkeypatch, sweep, MRI_TRAIN_EPOCHS="2")


def notification(tmp_path, dag_id: str, task_id: str, event: str) -> dict:
    (path,) = (tmp_path / "notifications" / dag_id).glob(f"*.{task_id}.*.{event}.json")
    return json.loads(path.read_text())


def test_models_are_trained_evaluated_and_results_accumulate_with_history(ml):
    db, storage, tmp_path = ml
    train_snapshot = register_and_gate(db, storage, "train", per_class=8, first_seed=0).snapshot_id
    test_snapshot = register_and_gate(db, storage, "test", per_class=6, first_seed=500).snapshot_id

    train_run = build_train_model_dag("t").test()
    assert train_run.state == DagRunState.SUCCESS
    models = db.fetch_all(
        "SELECT model_id, role, train_snapshot, path, run_id, CAST(hyperparameters AS TEXT), stage FROM models"
    )
    assert len(models) == 2
    assert {(m[1], m[2], m[4], m[6]) for m in models} == {("fine_tuned", train_snapshot, train_run.run_id, "candidate")}
    assert sorted(json.loads(m[5])["learning_rate"] for m in models) == [0.005, 0.01]
    assert all(missing_files(m[3]) == [] for m in models)
    assert load_model(models[0][3]).metadata["train_snapshot"] == train_snapshot
    # What a sweep is ranked by: the kept epoch's validation metrics, from the bundle, in the row.
    validation = db.fetch_all("SELECT model_id, val_roc_auc, val_loss, val_accuracy, val_f1 FROM models")
    assert sorted(v[1] is None for v in validation) == [False, True]  # one entry holds out no validation
    for model_id, val_roc_auc, *rest in validation:
        kept = load_model(dict((m[0], m[3]) for m in models)[model_id]).metadata["validation"]
        assert (val_roc_auc, *rest) == tuple(kept.get(name) for name in ("roc_auc", "loss", "accuracy", "f1"))
    trained = notification(tmp_path, "train_model", "publish_models", "success")["message"]
    assert trained.startswith(f"2 fine-tuned models on train snapshot {train_snapshot[:12]}: ft-")

    assert build_test_baseline_dag("t").test().state == DagRunState.SUCCESS
    evaluated = build_test_fine_tuned_dag("t").test()
    assert evaluated.state == DagRunState.SUCCESS

    results = db.fetch_all(
        "SELECT r.model_id, m.role, r.test_snapshot, r.images, r.roc_auc, r.accuracy, r.roc_png, r.confusion_png "
        "FROM model_results r JOIN models m ON m.model_id = r.model_id ORDER BY m.role"
    )
    assert [(r[1], r[2], r[3]) for r in results] == [
        ("baseline", test_snapshot, 12),
        ("fine_tuned", test_snapshot, 12),
        ("fine_tuned", test_snapshot, 12),
        ("learned_baseline", test_snapshot, 12),
    ]
    assert all(0 <= r[4] <= 1 and 0 <= r[5] <= 1 for r in results)
    assert all((tmp_path / r[6]).is_file() and (tmp_path / r[7]).is_file() for r in results)
    # Every result: 95% intervals around its ROC AUC and accuracy, the per-image probabilities
    # (keyed by the images' SHA-256, what two models are paired on), the label-order-free metrics.
    test_images = {image.content_hash for image in load_snapshot(db, test_snapshot).images}
    for row in db.fetch_records(
        "SELECT roc_auc, roc_auc_low, roc_auc_high, accuracy, accuracy_low, accuracy_high, resamples, predictions, "
        "balanced_accuracy, brier, CAST(per_class AS TEXT) AS per_class FROM model_results"
    ):
        assert row["roc_auc_low"] <= row["roc_auc"] <= row["roc_auc_high"] and row["resamples"] == 2000
        assert row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"]
        assert 0 <= row["balanced_accuracy"] <= 1 and 0 <= row["brier"] <= 2
        assert [c["images"] for c in json.loads(row["per_class"])] == [6, 6]
        predictions = read_predictions(row["predictions"])
        assert set(predictions.keys) == test_images and predictions.probabilities.shape == (12, 2)
    message = notification(tmp_path, "test_fine_tuned_model", "publish_results", "success")["message"]
    assert message.count("ROC AUC") == 4 and " | baseline baseline-" in message
    assert " | learned baseline learned_baseline-" in message

    # Nothing new: nothing evaluated twice, nothing emitted.
    again = build_test_fine_tuned_dag("t").test()
    assert again.get_task_instance("publish_results").state == TaskInstanceState.SKIPPED
    assert db.fetch_all("SELECT COUNT(*) FROM model_results") == [(4,)]

    # A new gated test snapshot: every fine-tuned model is evaluated again, old rows untouched.
    before = sorted(db.fetch_all("SELECT result_id, model_id, test_snapshot, roc_auc FROM model_results"))
    newer = register_and_gate(db, storage, "test", per_class=2, first_seed=900).snapshot_id
    assert build_test_fine_tuned_dag("t").test().state == DagRunState.SUCCESS
    after = sorted(db.fetch_all("SELECT result_id, model_id, test_snapshot, roc_auc FROM model_results"))
    assert set(before) <= set(after) and len(after) == 6
    assert sorted(r[2] for r in after if r not in before) == [newer, newer]


def test_a_diverging_training_run_notifies_leaves_no_model_folder_and_its_sibling_is_recorded(ml, monkeypatch):
    db, storage, tmp_path = ml
    register_and_gate(db, storage, "train", per_class=4, first_seed=0)
    diverging = {"learning_rate": 1e9, "epochs": 6, "validation_fraction": 0.0}
    monkeypatch.setenv("MRI_TRAIN_SWEEP", json.dumps([diverging, {"epochs": 1, "validation_fraction": 0.0}]))
    settings.cache_clear()

    run = build_train_model_dag("t").test()

    assert run.state == DagRunState.FAILED
    assert run.get_task_instance("publish_models").state == TaskInstanceState.UPSTREAM_FAILED
    failure = notification(tmp_path, "train_model", "fine_tune", "failure")
    assert "training diverged" in failure["exception"] and failure["map_index"] == 0
    # The other entry's model is saved and recorded all the same (record_models runs once all are done).
    [(model_id, path)] = db.fetch_all("SELECT model_id, path FROM models")
    assert [p.name for p in (tmp_path / "models").iterdir()] == [model_id] and missing_files(path) == []


def test_the_learned_baseline_is_fitted_on_the_gated_train_snapshot_once_per_test_snapshot(ml):
    """Gates pass in either order: each baseline is evaluated once per test snapshot, the learned one
    once the train snapshot is there too; its folder holds JSON only (no pickle to load)."""
    db, storage, tmp_path = ml
    test_snapshot = register_and_gate(db, storage, "test", per_class=6, first_seed=500).snapshot_id

    test_gate_only = build_test_baseline_dag("t").test()
    assert test_gate_only.get_task_instance("evaluate_baseline").state == TaskInstanceState.SUCCESS
    assert test_gate_only.get_task_instance("fit_learned_baseline").state == TaskInstanceState.SKIPPED

    train_snapshot = register_and_gate(db, storage, "train", per_class=8, first_seed=0).snapshot_id
    train_gate_too = build_test_baseline_dag("t").test()
    assert train_gate_too.get_task_instance("prepare_baseline").state == TaskInstanceState.SKIPPED
    assert train_gate_too.get_task_instance("fit_learned_baseline").state == TaskInstanceState.SUCCESS

    nothing_new = build_test_baseline_dag("t").test()
    assert nothing_new.state == DagRunState.SUCCESS
    assert {ti.task_id for ti in nothing_new.get_task_instances() if ti.state == TaskInstanceState.SKIPPED} == {
        "prepare_baseline",
        "evaluate_baseline",
        "fit_learned_baseline",
    }

    rows = db.fetch_records(
        "SELECT m.model_id, m.role, m.train_snapshot, m.path, r.test_snapshot, r.images, r.roc_auc, r.predictions "
        "FROM model_results r JOIN models m ON m.model_id = r.model_id ORDER BY m.role"
    )
    assert [(r["role"], r["test_snapshot"], r["images"]) for r in rows] == [
        ("baseline", test_snapshot, 12),
        ("learned_baseline", test_snapshot, 12),
    ]
    learned = rows[1]
    assert learned["train_snapshot"] == train_snapshot
    assert [p.name for p in Path(learned["path"]).iterdir()] == [learned_baseline.MODEL_FILE]
    # The saved model gives the probabilities the evaluation recorded.
    members = load_snapshot(db, test_snapshot).images
    images = read_images([(i.uri, i.label) for i in members], lambda uri: storage.read(storage.key(uri)), LABELS)
    recorded = read_predictions(learned["predictions"])
    expected = learned_baseline.load(learned["path"]).predict_proba(images.images)
    assert recorded.probabilities == pytest.approx(expected, abs=1e-5)
    assert recorded.keys == [i.content_hash for i in members]
    notice = notification(tmp_path, "test_baseline_model", "fit_learned_baseline", "success")["message"]
    assert notice.startswith(f"learned baseline {learned['model_id']}: ROC AUC ")


def trigger_uris(condition) -> set[str]:
    """The Dataset (Asset) URIs of a schedule's condition, nested any/all flattened."""
    if hasattr(condition, "uri"):
        return {condition.uri}
    return set().union(*(trigger_uris(member) for member in condition.objects))


def test_each_gate_and_each_sweep_runs_the_baselines():
    """A registry from before the learned baseline (its snapshots gated already), or one whose fit
    failed, gets it with the next sweep, not only with the next gate."""
    timetable = build_test_baseline_dag("t").timetable
    condition = getattr(timetable, "asset_condition", None) or timetable.dataset_condition
    assert trigger_uris(condition) == {GATE_PASSED["train"].uri, GATE_PASSED["test"].uri, MODEL_TRAINED.uri}


def test_evaluation_waits_for_a_gated_test_snapshot(ml):
    db, storage, _ = ml
    run = build_test_fine_tuned_dag("t").test()
    assert run.get_task_instance("find_unevaluated_models").state == TaskInstanceState.SKIPPED
    assert db.fetch_all("SELECT COUNT(*) FROM model_results") == [(0,)]


# The store is what this test varies; one backend is enough.
@pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
def test_evaluation_reads_the_snapshot_by_its_uris_from_s3(ml, s3_root, monkeypatch):
    db, _, tmp_path = ml
    monkeypatch.setenv("MRI_STORAGE_ROOT", s3_root)
    monkeypatch.setenv("MRI_STORAGE_CONN_ID", "test_s3")
    settings.cache_clear()
    storage = get_storage()
    test_snapshot = register_and_gate(db, storage, "test", per_class=3, first_seed=500).snapshot_id

    assert build_test_baseline_dag("t").test().state == DagRunState.SUCCESS

    rows = db.fetch_all("SELECT test_snapshot, images FROM model_results")
    assert rows == [(test_snapshot, 6)] and all(
        uri.startswith("s3://") for (uri,) in db.fetch_all("SELECT uri FROM images")
    )


# Every name of TrainConfig: printed whole, this entry is longer than rendered_map_index's 250 chars.
EVERY_KEY = {
    "epochs": 1,
    "batch_size": 8,
    "learning_rate": 0.01,
    "weight_decay": 0.05,
    "warmup_epochs": 0.5,
    "image_size": 32,
    "seed": 0,
    "freeze_backbone": False,
    "augment": True,
    "augment_intensity": True,
    "validation_fraction": 0.0,
    "patience": 10,
    "log_every": 10,
}


@pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
def test_the_fine_tune_label_is_short_whatever_the_sweep_entry(ml):
    task = build_train_model_dag("t").get_task("fine_tune")
    entry = {**EVERY_KEY, "learning_rate": 0.01234567890123, "weight_decay": 0.0512345678901234}
    assert len(str(entry)) > 250
    label = task.get_dag().get_template_env().from_string(task.partial_kwargs["map_index_template"])
    rendered = label.render(task=SimpleNamespace(hyperparameters=entry), ti=SimpleNamespace(map_index=7))
    assert rendered == "entry 7, lr 0.01234567890123"


@pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
def test_a_retried_fine_tune_and_evaluation_keep_the_snapshot_their_run_picked(ml, monkeypatch):
    db, storage, _ = ml
    picked = register_and_gate(db, storage, "train", per_class=4, first_seed=0).snapshot_id
    monkeypatch.setenv("MRI_TRAIN_SWEEP", json.dumps([EVERY_KEY]))
    settings.cache_clear()
    train = build_train_model_dag("t")
    run = train.test()
    assert run.state == DagRunState.SUCCESS
    assert len(run.get_task_instance("fine_tune", map_index=0).rendered_map_index) <= 100
    ((model_id, path, recorded),) = db.fetch_all("SELECT model_id, path, train_snapshot FROM models")
    saved_at = read_metadata(path)["saved_at"]

    # A newer snapshot passes its gate, then the run's fine_tune is retried (or cleared).
    register_and_gate(db, storage, "train", per_class=4, first_seed=100)
    run_task_again(train, run, "fine_tune", 0)

    assert recorded == picked and db.fetch_all("SELECT model_id, train_snapshot FROM models") == [(model_id, picked)]
    metadata = read_metadata(path)
    assert (metadata["train_snapshot"], metadata["saved_at"]) == (picked, saved_at), "retrained on other data"

    tested = register_and_gate(db, storage, "test", per_class=3, first_seed=500).snapshot_id
    evaluate = build_test_fine_tuned_dag("t")
    evaluated = evaluate.test()
    assert evaluated.state == DagRunState.SUCCESS
    register_and_gate(db, storage, "test", per_class=2, first_seed=900)
    run_task_again(evaluate, evaluated, "evaluate", 0)
    assert db.fetch_all("SELECT model_id, test_snapshot, images FROM model_results") == [(model_id, tested, 6)]


@pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
def test_a_fine_tune_trains_while_another_process_holds_the_duckdb_registry(ml, duckdb_conn_id, monkeypatch):
    """The fine-tune runs outside the registry pool, so it must not open the registry: under a
    parallel executor a writer in the pool may hold DuckDB's file lock all the while."""
    db, storage, _ = ml
    register_and_gate(db, storage, "train", per_class=4, first_seed=0)
    monkeypatch.setenv("MRI_TRAIN_SWEEP", json.dumps([{"epochs": 1, "validation_fraction": 0.0}]))
    settings.cache_clear()
    train = build_train_model_dag("t")
    run = train.test()
    assert run.state == DagRunState.SUCCESS
    [(path,)] = db.fetch_all("SELECT path FROM models")
    shutil.rmtree(path)  # so the retried fine_tune trains again, start to end

    with holding_duckdb_file(db.path):
        with pytest.raises(DatabaseUnavailableError, match="another process holds the lock"):
            get_database(duckdb_conn_id).fetch_all("SELECT 1")
        run_task_again(train, run, "fine_tune", 0)

    assert missing_files(path) == []


def a_models_dir_where_only_short_file_names_fit(root) -> str:
    """A real folder whose bundle temp folder, ``.<model id>.tmp-XXXXXXXX`` (29 chars), can hold
    ``model.safetensors`` and ``config.json`` but not ``preprocessor_config.json``: the path would
    exceed Linux's PATH_MAX (4095 chars). Saving then fails mid-way, after the weights are written,
    with a real OSError (ENAMETOOLONG), even as root."""
    length = 4095 - len("/.ft-0123456789ab.tmp-abcdefgh/") - len("model.safetensors") - 3
    folder = str(root)
    while len(folder) < length:
        folder += "/" + "d" * min(200, length - len(folder) - 1)
    os.makedirs(folder)
    return folder


def test_a_save_failing_mid_way_leaves_no_model_folder_no_temp_folder_and_no_row(ml, monkeypatch):
    db, storage, tmp_path = ml
    register_and_gate(db, storage, "train", per_class=4, first_seed=0)
    models_dir = a_models_dir_where_only_short_file_names_fit(tmp_path / "models")
    monkeypatch.setenv("MRI_MODELS_DIR", models_dir)
    monkeypatch.setenv("MRI_TRAIN_SWEEP", json.dumps([{"epochs": 1, "validation_fraction": 0.0}]))
    settings.cache_clear()

    train = build_train_model_dag("t")
    train.task_dict["fine_tune"].partial_kwargs["retries"] = 0  # the failure is the point: no retry, no wait

    run = train.test()

    assert run.state == DagRunState.FAILED
    failure = notification(tmp_path, "train_model", "fine_tune", "failure")
    assert "File name too long" in failure["exception"] and "preprocessor_config.json" in failure["exception"]
    assert os.listdir(models_dir) == []
    assert db.fetch_all("SELECT COUNT(*) FROM models") == [(0,)]

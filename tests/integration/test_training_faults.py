"""Faults of train_model, test_baseline_model and test_fine_tuned_model under `dag.test()`: a model
that cannot be evaluated blocks no other model, and a file changed after its gate passed is never
trained or evaluated on."""

import hashlib
import json

import pytest
from airflow.utils.state import DagRunState, TaskInstanceState

from include.ml.bundle import WEIGHTS
from include.training.dags import build_test_baseline_dag, build_test_fine_tuned_dag, build_train_model_dag
from include.wiring.compat import AIRFLOW_V_3_0_PLUS
from include.wiring.datasets import MODEL_EVALUATED
from tests.support.environment import training_registry, use
from tests.support.metadata import dataset_events
from tests.support.records import register_and_gate, toy_png

# The store and the DAG wiring are what these tests vary; one backend is enough.
pytestmark = pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
TWO, THREE = "glioma,meningioma", "glioma,meningioma,pituitary"


@pytest.fixture
def ml(db_conn_id, tmp_path, monkeypatch):
    return training_registry(
        db_conn_id, tmp_path, monkeypatch, [{"validation_fraction": 0.0}], MRI_LABELS=TWO, MRI_TRAIN_EPOCHS="1"
    )


def fine_tuned_evaluation():
    """test_fine_tuned_model with its outlet Dataset registered, as the scheduler's DAG processor does."""
    dag = build_test_fine_tuned_dag("t")
    if not AIRFLOW_V_3_0_PLUS:  # Airflow 3's dag.test() registers the DAG itself
        dag.sync_to_db()
    return dag


def notifications(tmp_path, dag_id: str, task_id: str, event: str) -> list[dict]:
    paths = sorted((tmp_path / "notifications" / dag_id).glob(f"*.{task_id}.*.{event}.json"))
    return [json.loads(path.read_text()) for path in paths]


def model_ids(db) -> set[str]:
    return {model_id for (model_id,) in db.fetch_all("SELECT model_id FROM models")}


def test_a_model_trained_on_other_labels_is_skipped_and_the_others_are_evaluated_and_published(ml, monkeypatch):
    db, storage, tmp_path = ml
    register_and_gate(db, storage, "train", per_class=4, first_seed=0)
    assert build_train_model_dag("t").test().state == DagRunState.SUCCESS
    (old,) = model_ids(db)

    # A third class is added: the old model has two outputs, the new one three.
    use(monkeypatch, MRI_LABELS=THREE)
    register_and_gate(db, storage, "train", per_class=4, first_seed=100, labels=("glioma", "meningioma", "pituitary"))
    assert build_train_model_dag("t").test().state == DagRunState.SUCCESS
    (new,) = model_ids(db) - {old}
    register_and_gate(db, storage, "test", per_class=2, first_seed=500, labels=("glioma", "meningioma", "pituitary"))

    run = fine_tuned_evaluation().test()

    assert run.state == DagRunState.SUCCESS
    assert [ti.map_index for ti in run.get_task_instances() if ti.task_id == "evaluate"] == [0]
    assert db.fetch_all("SELECT model_id, images FROM model_results") == [(new, 6)]
    assert dataset_events(MODEL_EVALUATED.uri, [run.run_id]) == 1
    (published,) = notifications(tmp_path, "test_fine_tuned_model", "publish_results", "success")
    assert f"not evaluated: {old}: " in published["message"]
    assert "(glioma, meningioma)" in published["message"]
    assert "MRI_LABELS (glioma, meningioma, pituitary)" in published["message"]

    # Every later run skips it again without trying: nothing fails, nothing is evaluated twice.
    again = fine_tuned_evaluation().test()
    assert again.state == DagRunState.SUCCESS
    assert again.get_task_instance("publish_results").state == TaskInstanceState.SKIPPED
    assert db.fetch_all("SELECT model_id FROM model_results") == [(new,)]


def test_one_model_failing_its_evaluation_does_not_keep_the_others_from_being_published(ml, monkeypatch):
    db, storage, tmp_path = ml
    use(monkeypatch, MRI_TRAIN_SWEEP=json.dumps([{"validation_fraction": 0.0}, {"learning_rate": 0.005}]))
    register_and_gate(db, storage, "train", per_class=4, first_seed=0)
    assert build_train_model_dag("t").test().state == DagRunState.SUCCESS
    (broken, path), (whole, _) = sorted(db.fetch_all("SELECT model_id, path FROM models"))
    (tmp_path / path / WEIGHTS).unlink()  # a damaged bundle: fails the same way every time
    register_and_gate(db, storage, "test", per_class=2, first_seed=500)

    run = fine_tuned_evaluation().test()

    states = {ti.map_index: ti.state for ti in run.get_task_instances() if ti.task_id == "evaluate"}
    assert sorted(states.values()) == [TaskInstanceState.FAILED, TaskInstanceState.SUCCESS]
    assert run.get_task_instance("publish_results").state == TaskInstanceState.SUCCESS
    assert db.fetch_all("SELECT model_id FROM model_results") == [(whole,)]
    assert dataset_events(MODEL_EVALUATED.uri, [run.run_id]) == 1
    (failure,) = notifications(tmp_path, "test_fine_tuned_model", "evaluate", "failure")
    assert broken in failure["message"]
    (published,) = notifications(tmp_path, "test_fine_tuned_model", "publish_results", "success")
    assert whole in published["message"] and f"evaluation failed: {broken}" in published["message"]


def swap(storage, key: str) -> tuple[str, str]:
    """Replace the file at ``key`` by other bytes; its (old, new) SHA-256."""
    old = hashlib.sha256(storage.read(key)).hexdigest()
    other = toy_png("meningioma", 4242)
    storage.write(key, other)
    return old, hashlib.sha256(other).hexdigest()


def test_a_train_file_swapped_after_its_gate_passed_fails_the_fine_tune_naming_it(ml):
    db, storage, tmp_path = ml
    keys = register_and_gate(db, storage, "train", per_class=4, first_seed=0).keys
    expected, actual = swap(storage, keys[1])

    run = build_train_model_dag("t").test()

    assert run.state == DagRunState.FAILED
    # AirflowFailException: FAILED at once, not up for retry (fine_tune has retries=1).
    assert run.get_task_instance("fine_tune", map_index=0).state == TaskInstanceState.FAILED
    (failure,) = notifications(tmp_path, "train_model", "fine_tune", "failure")
    for part in (storage.uri(keys[1]), expected, actual, "restore the file or re-run the gate"):
        assert part in failure["exception"]
    assert db.fetch_all("SELECT COUNT(*) FROM models") == [(0,)]


def test_a_test_file_swapped_after_its_gate_passed_fails_the_evaluation_naming_it(ml):
    db, storage, tmp_path = ml
    keys = register_and_gate(db, storage, "test", per_class=3, first_seed=500).keys
    expected, actual = swap(storage, keys[-1])

    run = build_test_baseline_dag("t").test()

    assert run.state == DagRunState.FAILED
    assert run.get_task_instance("evaluate_baseline").state == TaskInstanceState.FAILED
    (failure,) = notifications(tmp_path, "test_baseline_model", "evaluate_baseline", "failure")
    for part in (storage.uri(keys[-1]), expected, actual, "restore the file or re-run the gate"):
        assert part in failure["exception"]
    assert db.fetch_all("SELECT COUNT(*) FROM model_results") == [(0,)]

"""deploy_best_model on DuckDB and on a real PostgreSQL: a fair pick, a guarded promotion, an atomic switch.

Models are real (tiny ResNets saved with include.ml.bundle.save_model); registry rows are written
here as training and evaluation would write them.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from airflow.utils.state import DagRunState, TaskInstanceState
from PIL import Image

from include.config import settings
from include.db import get_database
from include.db.migrations import apply_migrations
from include.deploy.dag import build_deploy_dag
from include.deploy.decision import Decision, PromotionError, decide
from include.deploy.model_card import MODEL_CARD
from include.deploy.promotion import CHECKPOINTS, production_model_id, promote, reconcile
from include.deploy.releases import LocalBundles
from include.ml.bootstrap import Interval
from include.ml.evaluate import PREDICTIONS_FILE
from include.storage import get_storage
from include.wiring.datasets import MODEL_DEPLOYED
from tests.support.metadata import dataset_events, register, run_task_again, xcom_value
from tests.support.tiny_models import save_tiny_model

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OLD, NEW, FAILED = "a" * 64, "b" * 64, "c" * 64  # test snapshots


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Four saved models in one MRI_MODELS_DIR, shared by the tests of this module (they are only read)."""
    root = tmp_path_factory.mktemp("models")
    return {name: save_tiny_model(root / name, seed) for seed, name in enumerate(["m-a", "m-b", "m-c", "m-d"])}


@pytest.fixture(autouse=True)
def release_folders(model_dirs, tmp_path, monkeypatch):
    """The folders a release is made from and served in: the shared models, this test's evaluations
    and production bundle."""
    monkeypatch.setenv("MRI_MODELS_DIR", str(model_dirs["m-a"].parent))
    monkeypatch.setenv("MRI_EVALUATIONS_DIR", str(tmp_path / "evaluations"))
    monkeypatch.setenv("MRI_PRODUCTION_DIR", str(tmp_path / "production"))
    settings.cache_clear()


@pytest.fixture
def registry(db_conn_id, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MRI_DB_CONN_ID", db_conn_id)
    monkeypatch.setenv("MRI_STORAGE_ROOT", str(tmp_path / "storage"))
    monkeypatch.setenv("MRI_NOTIFICATIONS_DIR", str(tmp_path / "notifications"))
    settings.cache_clear()
    db = get_database(db_conn_id)
    apply_migrations(db)
    return db


def insert(db, table: str, row: dict) -> None:
    with db.transaction() as cursor:
        columns = ", ".join(row)
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({', '.join([db.placeholder] * len(row))})", tuple(row.values())
        )


def add_model(
    db, model_id: str, path, created: int, role: str = "fine_tuned", sweep: str | None = None, **validation
) -> None:
    """A models row; ``sweep`` is the train_model run (default: a sweep of its own), ``validation``
    its val_<metric> values (val_roc_auc=0.9, ...)."""
    insert(
        db,
        "models",
        {
            "model_id": model_id,
            "base_model": "config:tiny",
            "hyperparameters": json.dumps({"lr": 0.002, "epochs": created}),
            "train_snapshot": "t" * 64,
            "path": str(path),
            "stage": "candidate",
            "created_at": T0 + timedelta(hours=created),
            "role": role,
            "run_id": sweep or f"sweep-{model_id}",
            **validation,
        },
    )


# Each result's per-image probabilities, on 20 test images per class (keys k0..k39).
PER_CLASS = 20


def predictions_with_auc(roc_auc: float) -> tuple[list[int], np.ndarray]:
    """Targets and probabilities whose ROC AUC is ``roc_auc`` (to 1/400): the same per-image noise for
    every model, the classes pulled apart by as much as it takes, so a model with a higher AUC is
    better on the same images, as a better fine-tune is."""
    targets = np.repeat([0, 1], PER_CLASS)
    noise = np.random.default_rng(0).normal(size=len(targets))
    low, high = -10.0, 10.0
    for _ in range(60):  # the smallest separation reaching roc_auc
        middle = (low + high) / 2
        low, high = (middle, high) if roc_auc_of(targets, noise + middle * targets) < roc_auc - 1e-9 else (low, middle)
    positive = 1 / (1 + np.exp(-(noise + high * targets)))
    return targets.tolist(), np.stack([1 - positive, positive], axis=1)


def roc_auc_of(targets: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean(scores[targets == 1][:, None] > scores[targets == 0][None, :]))


def write_predictions(result_id: str, roc_auc: float) -> str:
    """A predictions.json as the evaluation writes it, in MRI_EVALUATIONS_DIR."""
    targets, probabilities = predictions_with_auc(roc_auc)
    labels = list(settings().labels)
    path = Path(settings().evaluations_dir) / result_id / PREDICTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "labels": labels,
        "keys": [f"k{i}" for i in range(len(targets))],
        "targets": [labels[t] for t in targets],
        "probabilities": probabilities.tolist(),
    }
    path.write_text(json.dumps(record))
    return str(path)


def roc_png(tmp_path, name: str) -> str:
    """A ROC picture where the evaluation writes them (MRI_EVALUATIONS_DIR)."""
    path = tmp_path / "evaluations" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    Image.fromarray(np.full((8, 8), 200, dtype=np.uint8)).save(path)
    return str(path)


def add_result(db, result_id: str, model_id: str, snapshot: str, roc_auc: float, f1: float, at: int, **more) -> None:
    insert(
        db,
        "model_results",
        {
            "result_id": result_id,
            "model_id": model_id,
            "test_snapshot": snapshot,
            "loss": 0.5,
            "accuracy": more.pop("accuracy", 0.8),
            "precision": 0.8,
            "recall": 0.8,
            "f1": f1,
            "roc_auc": roc_auc,
            "confusion_matrix": json.dumps([[4, 1], [1, 4]]),
            "evaluated_at": T0 + timedelta(days=1, hours=at),
            "images": 2 * PER_CLASS,
            "predictions": write_predictions(result_id, roc_auc),
            **more,
        },
    )


def gate(db, snapshot: str, at: int, success: bool = True) -> None:
    insert(
        db,
        "quality_runs",
        {
            "suite": "images",
            "split": "test",
            "run_id": f"gate-{snapshot[:1]}-{at}",
            "success": success,
            "created_at": T0 + timedelta(hours=at),
            "snapshot": snapshot,
        },
    )


def deploy_run():
    """One deploy_best_model run, whatever its end; returns the DagRun."""
    run = register(build_deploy_dag("t")).test()
    RUNS.append(run.run_id)
    return run


def run_deploy():
    """One deploy_best_model run that must succeed; returns (decision dict, promote task state)."""
    run = deploy_run()
    assert run.state == DagRunState.SUCCESS
    return xcom_value(run, "decide"), run.get_task_instance("promote").state


RUNS: list[str] = []


def deployed_events() -> int:
    """model_deployed events emitted by the deploy runs of this session."""
    return dataset_events(MODEL_DEPLOYED.uri, RUNS)


def stages(db) -> dict[str, str]:
    """The fine-tuned models' stages (baselines are never candidates)."""
    return dict(db.fetch_all("SELECT model_id, stage FROM models WHERE role = 'fine_tuned'"))


def served(tmp_path) -> str | None:
    return (LocalBundles(tmp_path / "production").deployment() or {}).get("model_id")


def a_sweep_on_two_snapshots(db, model_dirs, tmp_path) -> None:
    """An older sweep (m-a) and the newest (m-b, m-c, m-d), on a newer gated snapshot, a failed one and
    an older one the pick must ignore, and a baseline (m-z) that is never a candidate."""
    gate(db, OLD, at=1)
    gate(db, NEW, at=2)
    gate(db, FAILED, at=3, success=False)  # newer, but the gate failed: not comparable data
    add_model(db, "m-a", model_dirs["m-a"], created=1, val_roc_auc=0.99, val_accuracy=0.99)
    add_model(db, "m-b", model_dirs["m-b"], created=2, sweep="s2", val_roc_auc=0.92, val_accuracy=0.80)
    add_model(db, "m-c", model_dirs["m-c"], created=3, sweep="s2", val_roc_auc=0.95, val_loss=0.2, val_accuracy=0.9)
    add_model(db, "m-d", model_dirs["m-d"], created=2, sweep="s2", val_roc_auc=0.95, val_loss=0.3, val_accuracy=0.9)
    add_model(db, "m-z", model_dirs["m-a"], created=0, role="baseline")
    add_result(db, "r1", "m-a", OLD, roc_auc=0.99, f1=0.99, at=1)
    add_result(db, "r2", "m-a", NEW, roc_auc=0.80, f1=0.80, at=2)
    add_result(db, "r3", "m-b", NEW, roc_auc=0.97, f1=0.85, at=2)  # the best test score: not what chooses
    add_result(db, "r4", "m-c", NEW, roc_auc=0.70, f1=0.85, at=2)  # superseded by r5 on the same snapshot
    add_result(db, "r5", "m-c", NEW, roc_auc=0.90, f1=0.85, at=3, roc_png=roc_png(tmp_path, "roc-c"))
    add_result(db, "r6", "m-d", NEW, roc_auc=0.91, f1=0.85, at=2, accuracy=0.95)
    add_result(db, "r7", "m-c", FAILED, roc_auc=1.0, f1=1.0, at=4)
    add_result(db, "r8", "m-z", NEW, roc_auc=0.98, f1=0.98, at=2)
    # The learned baseline's newest result on NEW is what the winner must beat (m-z, the untrained
    # one, at 0.98 would beat every model if it were a candidate or the floor; it is neither).
    add_learned_baseline(db, model_dirs, NEW, roc_auc=0.5, at=3, model_id="m-y")


def m_a_on_the_new_snapshot(db, model_dirs, **more) -> None:
    """NEW gated, the learned baseline at ROC AUC 0.5 on it, and m-a evaluated there at 0.90 (``more``:
    other columns of its result): the first production model to be, before the test's next step."""
    gate(db, NEW, at=1)
    add_learned_baseline(db, model_dirs, NEW, roc_auc=0.5, at=0)
    add_model(db, "m-a", model_dirs["m-a"], created=1)
    add_result(db, "r1", "m-a", NEW, roc_auc=0.90, f1=0.9, at=1, **more)


def test_the_newest_sweep_is_chosen_on_validation_and_only_its_choice_meets_the_test_snapshot(
    registry, model_dirs, tmp_path
):
    db = registry
    a_sweep_on_two_snapshots(db, model_dirs, tmp_path)

    decision, state = run_deploy()

    # By validation within sweep s2: m-c and m-d tie on ROC AUC, m-c has the lower validation loss;
    # m-b, the best on test, is last. m-a (an older sweep) and the baseline are not candidates.
    assert decision["ranking"] == ["m-c", "m-d", "m-b"]
    assert (decision["model_id"], decision["result_id"], decision["value"]) == ("m-c", "r5", 0.90)
    assert decision["validation_value"] == 0.95
    assert (decision["test_snapshot"], decision["promote"], state) == (NEW, True, TaskInstanceState.SUCCESS)
    assert production_model_id(db) == "m-c" == served(tmp_path)

    again, state = run_deploy()  # the same data: the same choice, and nothing to change
    assert again["ranking"] == decision["ranking"]
    assert (again["promote"], state) == (False, TaskInstanceState.SKIPPED)
    assert "m-c (chosen on validation roc_auc 0.9500) is in production already" in again["reason"]


def test_a_sweep_whose_validation_winner_has_no_test_result_yet_waits_for_it(registry, model_dirs, tmp_path):
    """A deploy started by another evaluation (the baseline's) while the sweep's are still committing
    must not promote a runner-up."""
    db = registry
    gate(db, NEW, at=1)
    add_learned_baseline(db, model_dirs, NEW, roc_auc=0.5, at=1)
    add_model(db, "m-a", model_dirs["m-a"], created=1, sweep="s", val_roc_auc=0.90)
    add_model(db, "m-b", model_dirs["m-b"], created=1, sweep="s", val_roc_auc=0.97)
    add_result(db, "r1", "m-a", NEW, roc_auc=0.95, f1=0.9, at=1)

    waiting, state = run_deploy()
    add_result(db, "r2", "m-b", NEW, roc_auc=0.93, f1=0.9, at=2)
    decided, _ = run_deploy()

    assert (waiting["promote"], state) == (False, TaskInstanceState.SKIPPED)
    assert waiting["reason"].startswith("m-b, the newest sweep's best by validation roc_auc, has no roc_auc")
    assert (decided["promote"], decided["model_id"]) == (True, "m-b")
    assert production_model_id(db) == "m-b" == served(tmp_path)


def test_selection_metric_is_a_setting(registry, model_dirs, tmp_path, monkeypatch):
    db = registry
    a_sweep_on_two_snapshots(db, model_dirs, tmp_path)
    monkeypatch.setenv("MRI_SELECTION_METRIC", "accuracy")
    settings.cache_clear()

    decision, _ = run_deploy()

    # Validation accuracy: m-c and m-d tie at 0.9 (m-c's lower loss); the test accuracy is reported.
    assert (decision["metric"], decision["ranking"], decision["value"]) == ("accuracy", ["m-c", "m-d", "m-b"], 0.8)
    assert production_model_id(db) == "m-c" == served(tmp_path)


def test_worse_model_is_kept_out_better_one_promoted_and_history_stays(registry, model_dirs, tmp_path, monkeypatch):
    db = registry
    events_before = deployed_events()
    monkeypatch.setenv("MRI_PROMOTION_MARGIN", "0.02")
    settings.cache_clear()
    m_a_on_the_new_snapshot(db, model_dirs, roc_png=roc_png(tmp_path, "roc-a"))
    first, _ = run_deploy()
    assert first["reason"].startswith("First production model: m-a")

    add_model(db, "m-b", model_dirs["m-b"], created=2)
    add_result(db, "r2", "m-b", NEW, roc_auc=0.85, f1=0.95, at=2)  # worse by the metric
    worse, worse_state = run_deploy()
    add_model(db, "m-c", model_dirs["m-c"], created=3)
    add_result(db, "r3", "m-c", NEW, roc_auc=0.91, f1=0.95, at=3)  # better, but within the margin
    within, _ = run_deploy()
    add_model(db, "m-d", model_dirs["m-d"], created=4)
    add_result(db, "r4", "m-d", NEW, roc_auc=0.99, f1=0.95, at=4, roc_png=roc_png(tmp_path, "roc-d"))
    better, better_state = run_deploy()

    assert (worse["promote"], worse_state) == (False, TaskInstanceState.SKIPPED)
    assert "m-b (chosen on validation roc_auc n/a) does not beat production m-a by more than chance" in worse["reason"]
    assert not within["promote"] and "lower end must be above MRI_PROMOTION_MARGIN=0.02" in within["reason"]
    assert within["gain_low"] <= 0.02 < better["gain_low"]
    assert (better["promote"], better_state) == (True, TaskInstanceState.SUCCESS)
    assert stages(db) == {"m-a": "archived", "m-b": "candidate", "m-c": "candidate", "m-d": "production"}
    assert served(tmp_path) == "m-d"
    [(results,)] = db.fetch_all("SELECT COUNT(*) FROM model_results WHERE model_id <> 'm-z'")
    assert results == 4  # every evaluation is still there
    rows = db.fetch_all(
        "SELECT promoted, candidate_model_id, previous_model_id, candidate_value, previous_value, margin, release "
        "FROM promotions ORDER BY decided_at"
    )
    assert [r[:3] for r in rows] == [
        (True, "m-a", None),
        (False, "m-b", "m-a"),
        (False, "m-c", "m-a"),
        (True, "m-d", "m-a"),
    ]
    assert rows[3][3:6] == (0.99, 0.90, 0.02) and rows[3][6] and rows[1][6] is None
    assert deployed_events() - events_before == 2  # one per promotion, none for the runs that kept production

    bundle = tmp_path / "production" / "current"
    card = (bundle / MODEL_CARD).read_text()
    assert NEW in card and '"epochs": 4' in card and "| roc_auc | 0.9900 |" in card
    assert f"95% interval [{better['gain_low']:+.4f}, {better['gain_high']:+.4f}] from 2000 paired" in card
    assert "![ROC curve](roc.png)" in card and (bundle / "roc.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((bundle / "labels.json").read_text())["labels"] == ["glioma", "meningioma"]
    assert json.loads((bundle / "metrics.json").read_text())["result_id"] == "r4"
    for name in ("config.json", "preprocessor_config.json", "model.safetensors", "mri_model.json"):
        assert (bundle / name).is_file()
    # Readable by whoever serves or fine-tunes from it, though save_model keeps its folders private.
    assert (bundle.stat().st_mode & 0o777, (bundle / "model.safetensors").stat().st_mode & 0o777) == (0o755, 0o644)


def test_a_gain_within_chance_is_not_promoted_and_the_decision_keeps_its_interval(registry, model_dirs, tmp_path):
    """Margin 0: one more correctly ordered pair in a hundred used to promote; now the gain's paired
    95% interval must start above 0."""
    db = registry
    m_a_on_the_new_snapshot(db, model_dirs)
    run_deploy()
    add_model(db, "m-b", model_dirs["m-b"], created=2)
    add_result(db, "r2", "m-b", NEW, roc_auc=0.91, f1=0.9, at=2)

    decision, state = run_deploy()

    assert decision["gain"] > 0 and decision["gain_low"] <= 0 < decision["gain_high"]
    assert (decision["promote"], state) == (False, TaskInstanceState.SKIPPED)
    assert "does not beat production m-a by more than chance" in decision["reason"]
    assert "(2000 paired resamples)" in decision["reason"]
    assert db.fetch_all(
        "SELECT promoted, gain, gain_low, gain_high, gain_resamples FROM promotions WHERE candidate_model_id = 'm-b'"
    ) == [(False, decision["gain"], decision["gain_low"], decision["gain_high"], 2000)]
    assert production_model_id(db) == "m-a" == served(tmp_path)


def test_nothing_evaluated_yet_is_recorded_and_emits_nothing(registry, tmp_path):
    events_before = deployed_events()

    decision, state = run_deploy()

    assert (decision["promote"], state) == (False, TaskInstanceState.SKIPPED)
    assert decision["reason"].startswith("No fine-tuned model of the newest sweep has a roc_auc on the latest gated")
    assert registry.fetch_all("SELECT promoted, candidate_model_id FROM promotions") == [(False, None)]
    assert deployed_events() == events_before and served(tmp_path) is None


def test_production_not_evaluated_on_the_snapshot_is_not_replaced_blindly(registry, model_dirs, tmp_path):
    db = registry
    gate(db, OLD, at=1)
    add_learned_baseline(db, model_dirs, OLD, roc_auc=0.5, at=1)
    add_model(db, "m-a", model_dirs["m-a"], created=1)
    add_result(db, "r1", "m-a", OLD, roc_auc=0.9, f1=0.9, at=1)
    run_deploy()
    gate(db, NEW, at=2)
    add_learned_baseline(db, model_dirs, NEW, roc_auc=0.4, at=2)
    add_model(db, "m-b", model_dirs["m-b"], created=2)
    add_result(db, "r2", "m-b", NEW, roc_auc=0.5, f1=0.5, at=2)

    decision, state = run_deploy()

    assert (decision["promote"], state) == (False, TaskInstanceState.SKIPPED)
    assert "Production model m-a has no roc_auc on snapshot bbbbbbbbbbbb" in decision["reason"]
    assert production_model_id(db) == "m-a" == served(tmp_path)


def production_with(db, model_dirs, tmp_path) -> tuple[LocalBundles, Decision]:
    """m-a in production (promoted for real), and a decision to replace it by m-b."""
    gate(db, NEW, at=1)
    add_model(db, "m-a", model_dirs["m-a"], created=1)
    add_model(db, "m-b", model_dirs["m-b"], created=2)
    add_result(db, "r1", "m-a", NEW, roc_auc=0.8, f1=0.8, at=1)
    add_result(db, "r2", "m-b", NEW, roc_auc=0.9, f1=0.9, at=2)
    bundles = LocalBundles(tmp_path / "production")
    rows = [
        {"rank": 1, "model_id": "m-b", "result_id": "r2", "test_snapshot": NEW, "metric_value": 0.9},
        {"rank": 2, "model_id": "m-a", "result_id": "r1", "test_snapshot": NEW, "metric_value": 0.8},
    ]
    versus_baseline = {
        "baseline": {"model_id": "m-z", "roc_auc": 0.5},
        "min_gain_over_baseline": 0.05,
        "compare": lambda winner, production: Interval(0.1, 0.05, 0.15, 2000),
    }
    promote(db, decide(rows[1:], None, "roc_auc", 0.0, **versus_baseline), "run-1", bundles)
    return bundles, decide(rows, "m-a", "roc_auc", 0.0, **versus_baseline)


def registry_state(db):
    return (
        sorted(db.fetch_all("SELECT model_id, stage FROM models")),
        sorted(db.fetch_all("SELECT run_id, promoted, candidate_model_id FROM promotions")),
    )


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("point", CHECKPOINTS)
def test_a_crash_at_any_point_of_promotion_leaves_production_intact_and_agreeing(registry, model_dirs, tmp_path, point):
    db = registry
    bundles, decision = production_with(db, model_dirs, tmp_path)
    before, release = registry_state(db), bundles.current_release()
    assert decision.promote

    def crash_at(name: str) -> None:
        if name == point:
            raise Crash(f"crash at {name}")

    with pytest.raises(Crash):
        promote(db, decision, "run-2", bundles, checkpoint=crash_at)

    assert registry_state(db) == before
    assert bundles.current_release() == release
    assert production_model_id(db) == "m-a" == bundles.deployment()["model_id"]
    # The retry (Airflow's) then promotes, and leaves no staging folder behind.
    promote(db, decision, "run-2", bundles)
    assert production_model_id(db) == "m-b" == bundles.deployment()["model_id"]
    assert not list(bundles.releases.glob(".staging-*"))


def test_postgres_dropping_the_connection_before_the_commit_rolls_back_registry_and_bundle(
    postgres_conn_id, postgres_server, model_dirs, tmp_path, monkeypatch
):
    """A real server-side fault: the promoting session is terminated after the switch, so COMMIT fails."""
    import psycopg2

    db = get_database(postgres_conn_id)
    apply_migrations(db)
    bundles, decision = production_with(db, model_dirs, tmp_path)
    before, release = registry_state(db), bundles.current_release()

    def terminate_the_promoting_session(name: str) -> None:
        if name == "bundle_switched":
            admin = psycopg2.connect(postgres_server.url)
            admin.autocommit = True
            admin.cursor().execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND state LIKE 'idle in%%'",
                (db.connection.schema,),
            )
            admin.close()

    with pytest.raises(psycopg2.Error):
        promote(db, decision, "run-2", bundles, checkpoint=terminate_the_promoting_session)

    assert registry_state(db) == before
    assert bundles.current_release() == release and bundles.deployment()["model_id"] == "m-a"


KILL_AT_SWITCH = """
import os, sys
from include.db import get_database
from include.deploy.decision import Decision
from include.deploy.promotion import promote
from include.deploy.releases import LocalBundles
from include.ml.bootstrap import Interval
from include.ml.evaluate import PREDICTIONS_FILE
decision = Decision(**{decision})
def die(name):
    if name == "bundle_switched":
        os._exit(17)  # no exception handler, no rollback code: the process is gone
promote(get_database(sys.argv[1]), decision, "run-2", LocalBundles(sys.argv[2]), checkpoint=die)
"""


def test_a_process_killed_between_switch_and_commit_is_reconciled_to_the_registry(
    registry, model_dirs, tmp_path, db_conn_id
):
    db = registry
    bundles, decision = production_with(db, model_dirs, tmp_path)
    before = registry_state(db)
    script = KILL_AT_SWITCH.replace("{decision}", repr(decision.as_dict()))

    killed = subprocess.run(
        [sys.executable, "-c", script, db_conn_id, str(bundles.root)], env=os.environ.copy(), capture_output=True
    )

    assert killed.returncode == 17, killed.stderr.decode()[-2000:]
    assert registry_state(db) == before  # never committed
    assert bundles.deployment()["model_id"] == "m-b"  # but the symlink had moved: they disagree
    reconcile(db, bundles)
    assert production_model_id(db) == "m-a" == bundles.deployment()["model_id"]


def test_served_bundle_predicts_what_the_evaluation_of_the_promoted_model_measured(registry, model_dirs, tmp_path):
    from include.ml.evaluate import evaluate_bundle
    from launcher.predict import main

    db = registry
    bundles, decision = production_with(db, model_dirs, tmp_path)
    promote(db, decision, "run-2", bundles)
    scan = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)).save(scan)

    # The evaluation path (what EvaluateImageClassifierOperator calls) on the model as it was evaluated:
    # on one image labelled c, the mean cross-entropy is -log p(c), so exp(-loss) is p(c).
    measured = {
        label: float(
            np.exp(
                -evaluate_bundle(
                    model_dirs["m-b"],
                    [(str(scan), label)],
                    lambda uri: open(uri, "rb").read(),
                    tmp_path / "evaluation" / label,
                    "m-b",
                )["loss"]
            )
        )
        for label in ("glioma", "meningioma")
    }
    # The served path: the CLI on <MRI_PRODUCTION_DIR>/current.
    out = io.StringIO()
    assert main(["--json", str(scan)], out=out) == 0
    served_result = json.loads(out.getvalue())

    assert served_result["model"]["model_id"] == "m-b"
    (prediction,) = served_result["predictions"]
    assert prediction["probabilities"] == pytest.approx(measured, abs=1e-6)


def test_publish_target_storage_mirrors_the_release_to_s3_then_names_it(
    duckdb_conn_id, s3_root, model_dirs, tmp_path, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_MRI_DB_CONN_ID", duckdb_conn_id)
    monkeypatch.setenv("MRI_STORAGE_ROOT", s3_root)
    monkeypatch.setenv("MRI_STORAGE_CONN_ID", "test_s3")
    settings.cache_clear()
    from include.deploy.mirror import publisher

    db = get_database(duckdb_conn_id)
    apply_migrations(db)
    bundles, decision = production_with(db, model_dirs, tmp_path)

    release = promote(db, decision, "run-2", bundles, publisher("storage:production"))

    storage = get_storage()
    assert storage.read("production/CURRENT").decode().strip() == release
    prefix = f"production/releases/{release}/"
    keys = {o.key.removeprefix(prefix) for o in storage.list(prefix)}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", MODEL_CARD, "deployment.json"} <= keys
    assert json.loads(storage.read(f"production/releases/{release}/deployment.json"))["model_id"] == "m-b"


# The store is what this test varies; one backend is enough.
@pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
def test_a_failed_storage_mirror_after_the_switch_reports_production_changed_and_a_cleared_task_only_mirrors(
    registry, model_dirs, tmp_path, s3_root, s3_relay, monkeypatch
):
    db = registry
    events_before = deployed_events()
    monkeypatch.setenv("MRI_STORAGE_ROOT", s3_root)
    monkeypatch.setenv("MRI_STORAGE_CONN_ID", "test_s3")
    monkeypatch.setenv("MRI_PUBLISH_TARGET", "storage:production")
    settings.cache_clear()
    m_a_on_the_new_snapshot(db, model_dirs, roc_png=roc_png(tmp_path, "roc-a"))
    s3_relay.cut()  # the mirror's endpoint is gone; the local production folder is not

    run = deploy_run()

    decision, state = xcom_value(run, "decide"), run.get_task_instance("promote").state
    assert (decision["promote"], state) == (True, TaskInstanceState.SUCCESS)
    assert served(tmp_path) == "m-a" and stages(db) == {"m-a": "production"}
    assert deployed_events() - events_before == 1  # production did change
    notices = list((tmp_path / "notifications" / "deploy_best_model").glob("*.promote.*.json"))
    assert [json.loads(p.read_text())["event"] for p in notices] == ["success"]
    message = json.loads(notices[0].read_text())["message"]
    assert message.startswith("Promoted m-a to production") and "mirroring to storage:production failed" in message
    assert "production is unchanged" not in message and "clear" in message

    # As the message says: the store back, the cleared promote task copies the release, and only that.
    s3_relay.restore()
    bundles = LocalBundles(tmp_path / "production")
    release, promotions = bundles.current_release(), db.fetch_all("SELECT run_id, promoted, release FROM promotions")
    run_task_again(build_deploy_dag("t"), run, "promote", -1)
    assert get_storage().read("production/CURRENT").decode().strip() == release
    assert [p.name for p in bundles.releases.iterdir()] == [release] and bundles.current_release() == release
    assert db.fetch_all("SELECT run_id, promoted, release FROM promotions") == promotions


# --- Issue 17: what promotion refuses, and what nothing may take away ---------------------------


def chosen(model_id: str, result_id: str, value: float, previous: str | None = None, previous_value=None) -> Decision:
    """A decision to promote ``model_id``, as decide() would return it, built without decide()."""
    return Decision(
        True, f"{model_id} chosen", "roc_auc", 0.0, NEW, model_id, result_id, value, previous, previous_value
    )


def serving_m_a(db, model_dirs, tmp_path) -> LocalBundles:
    """m-a promoted for real (registry and bundle), on the gated snapshot NEW."""
    gate(db, NEW, at=1)
    add_model(db, "m-a", model_dirs["m-a"], created=1)
    add_result(db, "r1", "m-a", NEW, roc_auc=0.8, f1=0.8, at=1)
    bundles = LocalBundles(tmp_path / "production")
    promote(db, chosen("m-a", "r1", 0.8), "run-a", bundles)
    return bundles


def only_config(model_dirs, tmp_path) -> str:
    """A model folder holding only config.json: what made `make predict` fail after a promotion."""
    folder = model_dirs["m-a"].parent / f"m-x-{tmp_path.name}"
    folder.mkdir()
    shutil.copy(model_dirs["m-b"] / "config.json", folder / "config.json")
    return str(folder)


def truncated_weights(model_dirs, tmp_path) -> str:
    """Every file a bundle needs, but the weights cut to half their size."""
    folder = model_dirs["m-a"].parent / f"m-x-{tmp_path.name}"
    shutil.copytree(model_dirs["m-b"], folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return str(folder)


@pytest.mark.parametrize(
    ("damage", "named"),
    [(only_config, ["preprocessor_config.json", "mri_model.json", "model.safetensors"]), (truncated_weights, [])],
)
def test_an_incomplete_or_unloadable_bundle_is_refused_before_the_switch_and_the_refusal_recorded(
    registry, model_dirs, tmp_path, damage, named
):
    db = registry
    bundles = serving_m_a(db, model_dirs, tmp_path)
    release, files = bundles.current_release(), sorted(p.name for p in bundles.current.iterdir())
    folder = damage(model_dirs, tmp_path)
    add_model(db, "m-x", folder, created=2)
    add_result(db, "rx", "m-x", NEW, roc_auc=0.95, f1=0.95, at=2)

    with pytest.raises(PromotionError, match="m-x") as refused:
        promote(db, chosen("m-x", "rx", 0.95, "m-a", 0.8), "run-x", bundles)

    assert all(name in str(refused.value) for name in named), str(refused.value)
    assert production_model_id(db) == "m-a" and stages(db)["m-x"] == "candidate"
    assert bundles.current_release() == release and bundles.deployment()["model_id"] == "m-a"
    assert sorted(p.name for p in bundles.current.iterdir()) == files
    assert [p.name for p in bundles.releases.iterdir()] == [release]  # no release of m-x, no staging left
    [(promoted, candidate, previous, reason, served_release)] = db.fetch_all(
        "SELECT promoted, candidate_model_id, previous_model_id, reason, release FROM promotions WHERE run_id = 'run-x'"
    )
    assert (promoted, candidate, previous, served_release) == (False, "m-x", "m-a", None)
    assert str(refused.value) in reason

    # The folder restored and the task cleared: the same run promotes, and its one row says so.
    shutil.rmtree(folder)
    shutil.copytree(model_dirs["m-b"], folder)
    promote(db, chosen("m-x", "rx", 0.95, "m-a", 0.8), "run-x", bundles)
    assert db.fetch_all("SELECT promoted, release FROM promotions WHERE run_id = 'run-x'") == [
        (True, bundles.current_release())
    ]
    assert production_model_id(db) == "m-x" == bundles.deployment()["model_id"]


@pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
def test_a_deploy_run_fails_on_an_incomplete_bundle_without_retrying_and_says_why(registry, model_dirs, tmp_path):
    db = registry
    events_before = deployed_events()
    gate(db, NEW, at=1)
    add_model(db, "m-z", model_dirs["m-a"], created=0, role="learned_baseline")
    add_result(db, "rz", "m-z", NEW, roc_auc=0.5, f1=0.5, at=1)
    add_model(db, "m-x", only_config(model_dirs, tmp_path), created=1)
    add_result(db, "rx", "m-x", NEW, roc_auc=0.95, f1=0.95, at=1)

    run = deploy_run()

    promote_ti = run.get_task_instance("promote")
    assert (run.state, promote_ti.state, promote_ti.try_number) == (DagRunState.FAILED, TaskInstanceState.FAILED, 1)
    assert production_model_id(db) is None and served(tmp_path) is None
    [(promoted, candidate, reason)] = db.fetch_all("SELECT promoted, candidate_model_id, reason FROM promotions")
    assert (promoted, candidate) == (False, "m-x") and "preprocessor_config.json" in reason
    assert deployed_events() == events_before


def add_learned_baseline(db, model_dirs, snapshot: str, roc_auc: float, at: int, model_id: str = "m-z") -> None:
    """The learned baseline evaluated on ``snapshot`` (its models row once): what a promotion must beat."""
    if not db.fetch_all(f"SELECT 1 FROM models WHERE model_id = {db.placeholder}", (model_id,)):
        add_model(db, model_id, model_dirs["m-a"], created=0, role="learned_baseline")
    add_result(db, f"{model_id}-{snapshot[:1]}-{at}", model_id, snapshot, roc_auc=roc_auc, f1=0.5, at=at, accuracy=0.5)


def test_a_model_that_does_not_beat_the_learned_baseline_by_the_gain_is_never_promoted(registry, model_dirs, tmp_path):
    db = registry
    gate(db, NEW, at=1)
    add_learned_baseline(db, model_dirs, NEW, roc_auc=0.80, at=1)
    add_model(db, "m-u", model_dirs["m-a"], created=0, role="baseline")  # the untrained one: not the floor
    add_result(db, "ru", "m-u", NEW, roc_auc=0.5, f1=0.5, at=2)
    add_model(db, "m-a", model_dirs["m-a"], created=1)
    add_result(db, "r1", "m-a", NEW, roc_auc=0.21, f1=0.3, at=2)  # the first production model of the issue

    worse, worse_state = run_deploy()
    add_model(db, "m-b", model_dirs["m-b"], created=2)
    # Far above the untrained baseline, above the learned one, but not by 0.05.
    add_result(db, "r2", "m-b", NEW, roc_auc=0.84, f1=0.6, at=3)
    within, _ = run_deploy()
    add_model(db, "m-c", model_dirs["m-c"], created=3)
    add_result(db, "r3", "m-c", NEW, roc_auc=0.90, f1=0.9, at=4)
    better, better_state = run_deploy()

    assert (worse["promote"], worse_state) == (False, TaskInstanceState.SKIPPED)
    assert "does not beat the learned baseline m-z by 0.05: test roc_auc 0.2100 vs 0.8000" in worse["reason"]
    assert not within["promote"]
    assert "m-b (chosen on validation roc_auc n/a) does not beat the learned baseline m-z by 0.05" in within["reason"]
    assert (better["promote"], better_state) == (True, TaskInstanceState.SUCCESS)
    rows = db.fetch_all(
        "SELECT promoted, candidate_model_id, reason, baseline_model_id, baseline_value, min_gain_over_baseline "
        "FROM promotions ORDER BY decided_at"
    )
    assert [r[:3] for r in rows] == [
        (False, "m-a", worse["reason"]),
        (False, "m-b", within["reason"]),
        (True, "m-c", better["reason"]),
    ]
    assert [r[3:] for r in rows] == [("m-z", 0.8, 0.05)] * 3
    assert production_model_id(db) == "m-c" == served(tmp_path)


def test_no_baseline_result_on_the_snapshot_means_no_promotion(registry, model_dirs, tmp_path):
    db = registry
    gate(db, OLD, at=1)
    gate(db, NEW, at=2)
    add_learned_baseline(db, model_dirs, OLD, roc_auc=0.5, at=1)  # evaluated, but not on the snapshot that counts
    add_model(db, "m-a", model_dirs["m-a"], created=1)
    add_result(db, "r1", "m-a", NEW, roc_auc=0.9, f1=0.9, at=2)

    decision, state = run_deploy()

    assert (decision["promote"], state) == (False, TaskInstanceState.SKIPPED)
    assert "The learned baseline has no roc_auc on snapshot bbbbbbbbbbbb" in decision["reason"]
    assert db.fetch_all("SELECT promoted, candidate_model_id FROM promotions") == [(False, "m-a")]
    assert production_model_id(db) is None and served(tmp_path) is None


def test_a_registry_naming_no_production_model_never_takes_the_served_bundle_away(
    registry, model_dirs, tmp_path, monkeypatch
):
    """A fresh registry, or MRI_DB_CONN_ID pointed at the wrong one: a "no" changes nothing on disk."""
    bundles = serving_m_a(registry, model_dirs, tmp_path)
    release = bundles.current_release()
    files = {p.name: p.read_bytes() for p in bundles.current.iterdir()}
    monkeypatch.setenv("AIRFLOW_CONN_EMPTY_REGISTRY", f'{{"conn_type": "duckdb", "host": "{tmp_path}/empty.duckdb"}}')
    monkeypatch.setenv("AIRFLOW_VAR_MRI_DB_CONN_ID", "empty_registry")
    settings.cache_clear()

    decision, state = run_deploy()
    reconciled = reconcile(get_database("empty_registry"), bundles)

    assert (decision["promote"], state) == (False, TaskInstanceState.SKIPPED)
    assert reconciled == release == bundles.current_release()
    assert {p.name: p.read_bytes() for p in bundles.current.iterdir()} == files
    assert production_model_id(registry) == "m-a" == bundles.deployment()["model_id"]


def test_postgres_two_promotions_racing_from_the_same_production_leave_exactly_one(
    postgres_conn_id, postgres_server, model_dirs, tmp_path, monkeypatch
):
    """Both decided against m-a; the second reads production while the first is inside its transaction."""
    import psycopg2

    db = get_database(postgres_conn_id)
    apply_migrations(db)
    bundles = serving_m_a(db, model_dirs, tmp_path)
    for created, name in enumerate(["m-b", "m-c"], start=2):
        add_model(db, name, model_dirs[name], created=created)
        add_result(db, f"r-{name}", name, NEW, roc_auc=0.9, f1=0.9, at=created)
    admin = psycopg2.connect(postgres_server.url)
    admin.autocommit = True
    first_inside = threading.Event()

    def another_promotion_waits_on_a_lock() -> bool:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                (db.connection.schema,),
            )
            return cursor.fetchone()[0] > 0

    def hold_until_the_other_waits(point: str) -> None:
        """Inside the first transaction, before its commit: let the second one reach the database."""
        if point != "registry_updated":
            return
        first_inside.set()
        deadline = time.monotonic() + 120
        while not another_promotion_waits_on_a_lock():
            if time.monotonic() > deadline:
                raise AssertionError("the second promotion never reached the database")
            time.sleep(0.05)

    outcomes: dict[str, object] = {}

    def promote_in_a_thread(model_id: str, checkpoint) -> None:
        try:
            decision = chosen(model_id, f"r-{model_id}", 0.9, "m-a", 0.8)
            outcomes[model_id] = promote(
                get_database(postgres_conn_id), decision, f"run-{model_id}", bundles, None, checkpoint
            )
        except Exception as err:  # the outcome the test checks
            outcomes[model_id] = err

    first = threading.Thread(target=promote_in_a_thread, args=("m-b", hold_until_the_other_waits))
    second = threading.Thread(target=promote_in_a_thread, args=("m-c", lambda point: None))
    first.start()
    assert first_inside.wait(120)
    second.start()
    first.join(300)
    second.join(300)
    admin.close()

    assert isinstance(outcomes["m-b"], str), outcomes
    assert isinstance(outcomes["m-c"], PromotionError), outcomes
    assert "Production changed since the decision" in str(outcomes["m-c"])
    assert db.fetch_all("SELECT model_id FROM models WHERE stage = 'production'") == [("m-b",)]
    assert production_model_id(db) == "m-b" == bundles.deployment()["model_id"]
    assert sorted(db.fetch_all("SELECT run_id FROM promotions WHERE promoted")) == [("run-a",), ("run-m-b",)]


def test_a_deploy_run_repairs_a_served_bundle_that_disagrees_with_the_registry_even_deciding_no(
    registry, model_dirs, tmp_path, db_conn_id
):
    """The state a promotion killed between its switch and its commit leaves, then the next deploy run."""
    db = registry
    bundles, decision = production_with(db, model_dirs, tmp_path)
    script = KILL_AT_SWITCH.replace("{decision}", repr(decision.as_dict()))
    killed = subprocess.run(
        [sys.executable, "-c", script, db_conn_id, str(bundles.root)], env=os.environ.copy(), capture_output=True
    )
    assert killed.returncode == 17, killed.stderr.decode()[-2000:]
    assert (production_model_id(db), served(tmp_path)) == ("m-a", "m-b")

    decided, state = run_deploy()  # no baseline result on the snapshot: nothing is promoted

    assert (decided["promote"], state) == (False, TaskInstanceState.SKIPPED)
    assert production_model_id(db) == "m-a" == served(tmp_path)


def outside_the_models_dir(model_dirs, tmp_path) -> str:
    """A whole model folder, but elsewhere."""
    folder = tmp_path / "elsewhere" / "m-x"
    shutil.copytree(model_dirs["m-b"], folder)
    return str(folder)


def linked_out_of_the_models_dir(model_dirs, tmp_path) -> str:
    """A name inside MRI_MODELS_DIR that is a link to a model folder elsewhere."""
    link = model_dirs["m-a"].parent / f"m-x-{tmp_path.name}"
    link.symlink_to(outside_the_models_dir(model_dirs, tmp_path))
    return str(link)


def climbing_out_of_the_models_dir(model_dirs, tmp_path) -> str:
    """A path that starts in MRI_MODELS_DIR and climbs out of it with '..'."""
    root = model_dirs["m-a"].parent
    return f"{root}/{os.path.relpath(outside_the_models_dir(model_dirs, tmp_path), root)}"


@pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
@pytest.mark.parametrize(
    "placed", [outside_the_models_dir, linked_out_of_the_models_dir, climbing_out_of_the_models_dir]
)
def test_promotion_refuses_a_model_folder_outside_the_models_dir_naming_it(registry, model_dirs, tmp_path, placed):
    db = registry
    bundles = serving_m_a(db, model_dirs, tmp_path)
    release = bundles.current_release()
    path = placed(model_dirs, tmp_path)
    add_model(db, "m-x", path, created=2)
    add_result(db, "rx", "m-x", NEW, roc_auc=0.95, f1=0.95, at=2)

    with pytest.raises(PromotionError, match=f"models.path {re.escape(repr(path))} is not inside MRI_MODELS_DIR"):
        promote(db, chosen("m-x", "rx", 0.95, "m-a", 0.8), "run-x", bundles)

    assert production_model_id(db) == "m-a" == bundles.deployment()["model_id"]
    assert [p.name for p in bundles.releases.iterdir()] == [release]
    [(promoted, reason)] = db.fetch_all("SELECT promoted, reason FROM promotions WHERE run_id = 'run-x'")
    assert not promoted and "MRI_MODELS_DIR" in reason


@pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
def test_promotion_refuses_an_evaluation_picture_outside_the_evaluations_dir_naming_it(registry, model_dirs, tmp_path):
    db = registry
    bundles = serving_m_a(db, model_dirs, tmp_path)
    secret = tmp_path / "secret.png"  # any file the worker can read, outside MRI_EVALUATIONS_DIR
    secret.write_bytes(b"\x89PNG not for a model card")
    add_model(db, "m-b", model_dirs["m-b"], created=2)
    add_result(db, "rb", "m-b", NEW, roc_auc=0.95, f1=0.95, at=2, roc_png=str(secret))

    with pytest.raises(
        PromotionError, match=f"model_results.roc_png {str(secret)!r} is not inside MRI_EVALUATIONS_DIR"
    ):
        promote(db, chosen("m-b", "rb", 0.95, "m-a", 0.8), "run-b", bundles)

    assert production_model_id(db) == "m-a" == bundles.deployment()["model_id"]
    assert not any(p.name == "roc.png" for release in bundles.releases.iterdir() for p in release.iterdir())


@pytest.mark.parametrize("db_conn_id", ["duckdb"], indirect=True)
def test_promotion_refuses_a_model_folder_holding_links(registry, model_dirs, tmp_path):
    db = registry
    bundles = serving_m_a(db, model_dirs, tmp_path)
    folder = model_dirs["m-a"].parent / f"m-x-{tmp_path.name}"
    shutil.copytree(model_dirs["m-b"], folder)
    (folder / "preprocessor_config.json").unlink()
    (folder / "preprocessor_config.json").symlink_to(tmp_path / "anything")  # the copy would follow it
    add_model(db, "m-x", folder, created=2)
    add_result(db, "rx", "m-x", NEW, roc_auc=0.95, f1=0.95, at=2)

    with pytest.raises(PromotionError, match=f"holds links, which a release does not copy: {folder}/preprocessor"):
        promote(db, chosen("m-x", "rx", 0.95, "m-a", 0.8), "run-x", bundles)

    assert production_model_id(db) == "m-a" == bundles.deployment()["model_id"]

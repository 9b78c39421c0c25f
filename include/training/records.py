"""The ML stages' rows: ``models`` (one per fine-tuned or baseline model) and ``model_results``
(append-only: one per evaluation, never updated or deleted).

Ids are derived from the Airflow run (and the map index, the model, the snapshot), so a retried
task writes the same rows once (``ON CONFLICT DO NOTHING``) and its bundle to the same folder.
The ML work itself is in ``include.ml`` (no Airflow); this module is what ties it to the registry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from include.config import Settings
from include.db import RegistryDatabase
from include.ml import METRIC_NAMES

log = logging.getLogger(__name__)

# The kept epoch's validation metrics, one column each (migration 0009): what a sweep is ranked by.
VALIDATION_COLUMNS = tuple(f"val_{name}" for name in METRIC_NAMES)
MODEL_COLUMNS = (
    "model_id",
    "base_model",
    "hyperparameters",
    "train_snapshot",
    "path",
    "stage",
    "role",
    "run_id",
    *VALIDATION_COLUMNS,
)
RESULT_COLUMNS = (
    "result_id",
    "model_id",
    "test_snapshot",
    *METRIC_NAMES,
    "confusion_matrix",
    "run_id",
    "images",
    "roc_png",
    "confusion_png",
    "balanced_accuracy",
    "brier",
    "per_class",
    "roc_auc_low",
    "roc_auc_high",
    "accuracy_low",
    "accuracy_high",
    "resamples",
    "predictions",
)
# The untrained network (chance), the learned baseline (include.ml.learned_baseline: the floor a
# promotion must clear) and the sweep's models (the only candidates).
LEARNED_BASELINE = "learned_baseline"
ROLES = ("baseline", LEARNED_BASELINE, "fine_tuned")
# What a fine-tune returns besides its ids and path (from its bundle's mri_model.json).
TRAINING_FACTS = ("base_model", "hyperparameters", "validation", "epochs_run", "best_epoch", "train_seconds")
# `models.train_snapshot` of a baseline: it saw no training data.
UNTRAINED = "untrained"


def derived_id(prefix: str, *parts: Any) -> str:
    """``<prefix>-<12 hex>``: the same parts (run id, map index, ...) always give the same id."""
    return f"{prefix}-{hashlib.sha256('|'.join(map(str, parts)).encode()).hexdigest()[:12]}"


def base_hyperparameters(cfg: Settings) -> dict:
    """What every fine-tune starts from; a sweep entry overrides it."""
    return {
        "epochs": cfg.train_epochs,
        "batch_size": cfg.train_batch_size,
        "learning_rate": cfg.train_learning_rate,
        "image_size": cfg.train_image_size,
    }


def record_model(
    db: RegistryDatabase,
    model_id: str,
    base_model: str,
    hyperparameters: dict,
    train_snapshot: str,
    path: str,
    role: str,
    run_id: str,
    validation: dict | None = None,
) -> None:
    """Add the ``models`` row of a saved bundle (stage ``candidate``); a retry adds nothing.

    :param validation: the kept epoch's validation metrics (names of METRIC_NAMES; a baseline has none).
    """
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    row = (
        model_id,
        base_model,
        json.dumps(hyperparameters, sort_keys=True),
        train_snapshot,
        path,
        "candidate",
        role,
        run_id,
        *((validation or {}).get(name) for name in METRIC_NAMES),
    )
    with db.transaction() as cursor:
        db.insert_new_rows(cursor, "models", MODEL_COLUMNS, "model_id", [row])


def record_result(
    db: RegistryDatabase, result_id: str, model_id: str, test_snapshot: str, evaluation: dict, run_id: str
) -> None:
    """Append one evaluation to ``model_results``; a retry of the same run adds nothing."""
    metrics = [evaluation[name] for name in METRIC_NAMES]
    intervals = evaluation["intervals"]

    def bound(metric: str, end: str) -> float | None:
        return intervals[metric][end] if intervals.get(metric) else None

    resamples = [i["resamples"] for i in intervals.values() if i]
    row = (
        result_id,
        model_id,
        test_snapshot,
        *metrics,
        json.dumps(evaluation["confusion_matrix"]),
        run_id,
        evaluation["images"],
        evaluation["roc_png"],
        evaluation["confusion_png"],
        evaluation["balanced_accuracy"],
        evaluation["brier"],
        json.dumps(evaluation["per_class"]),
        bound("roc_auc", "low"),
        bound("roc_auc", "high"),
        bound("accuracy", "low"),
        bound("accuracy", "high"),
        min(resamples) if resamples else None,
        evaluation["predictions"],
    )
    with db.transaction() as cursor:
        db.insert_new_rows(cursor, "model_results", RESULT_COLUMNS, "result_id", [row])


def model_location(db: RegistryDatabase, model_id: str) -> tuple[str, str]:
    """``(path, role)`` of a recorded model."""
    rows = db.fetch_all(f"SELECT path, role FROM models WHERE model_id = {db.placeholder}", (model_id,))
    if not rows:
        raise LookupError(
            f"Model {model_id!r} has no row in models ({db!r}); train_model records every model it saves."
        )
    return rows[0]


def models_to_evaluate(db: RegistryDatabase, test_snapshot: str) -> list[str]:
    """Fine-tuned models with no result on ``test_snapshot`` yet, oldest first."""
    rows = db.fetch_all(*db.statement("models_to_evaluate.sql", test_snapshot=test_snapshot))
    return [model_id for (model_id,) in rows]


def unevaluable_models(db: RegistryDatabase, model_ids: list[str], labels: tuple[str, ...]) -> dict[str, str]:
    """Of ``model_ids``, those trained on other labels than ``labels`` (MRI_LABELS), each with why.

    Read from each bundle's ``mri_model.json`` (its ``id2label``), so nothing is stored: such a model
    is passed over on every run, and evaluated again if MRI_LABELS is set back. A bundle that cannot
    be read is not judged here: its evaluate task fails, alone, saying what is wrong.
    """
    from pathlib import Path

    from include.ml.bundle import label_names, read_metadata
    from include.ml.data import label_mismatch

    reasons = {}
    for model_id in model_ids:
        path, _ = model_location(db, model_id)
        try:
            model_labels = label_names(read_metadata(Path(path))["id2label"])
        except (OSError, ValueError, KeyError):
            continue
        reason = label_mismatch(model_labels, labels)
        if reason:
            reasons[model_id] = reason
    return reasons


def latest_result(db: RegistryDatabase, role: str, test_snapshot: str) -> dict | None:
    """The newest result of a model with ``role`` on ``test_snapshot`` (the baseline to compare with):
    its ``model_id`` and metrics."""
    rows = db.fetch_records(*db.statement("latest_result.sql", role=role, test_snapshot=test_snapshot))
    return {name: rows[0][name] for name in ("model_id", *METRIC_NAMES)} if rows else None


def has_learned_baseline(db: RegistryDatabase, train_snapshot: str, test_snapshot: str) -> bool:
    """Whether a learned baseline fitted on ``train_snapshot`` has a result on ``test_snapshot``."""
    [(count,)] = db.fetch_all(
        *db.statement(
            "learned_baseline_results.sql",
            role=LEARNED_BASELINE,
            train_snapshot=train_snapshot,
            test_snapshot=test_snapshot,
        )
    )
    return count > 0


def describe_metrics(result: dict | None) -> str:
    """``ROC AUC 0.991, accuracy 0.964, F1 0.963`` for messages; ``not evaluated`` for None."""
    if result is None:
        return "not evaluated on this snapshot yet"

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return f"ROC AUC {number(result['roc_auc'])}, accuracy {number(result['accuracy'])}, F1 {number(result['f1'])}"

"""Every setting of the project: its environment name, its default and its meaning, in one place.

Read from the environment only, so DAG files can use it at parse time without touching the
metadata database (Airflow best practice: no ``Variable.get`` at top level). Airflow Variables set
as ``AIRFLOW_VAR_<NAME>`` environment variables are honoured under the same names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
SQL_DIR = PROJECT_ROOT / "sql"
DATA_DIR = PROJECT_ROOT / "data"


class ConfigError(ValueError):
    """A setting has a value the project cannot use; the message names the setting and the fix."""


@dataclass(frozen=True)
class Settings:
    # Airflow connection id of the registry database (every Astro SDK Table and SQL task).
    # conn_type duckdb (embedded, the default) or postgres (parallel writers).
    db_conn_id: str = "mri_db"
    # Pool every task that opens the registry database runs in; its size follows the backend
    # (DuckDB 1, Postgres many), see include/db.
    db_pool: str = "mri_db"
    # Where images live: a local folder path, or s3://bucket/prefix. A relative path is relative to
    # the project folder (not to each process's working directory: the triggerer, the workers and
    # `make` start in different ones).
    storage_root: str = str(DATA_DIR / "storage")
    # Airflow connection for the storage (an `aws` connection for s3://); None for a local folder.
    storage_conn_id: str | None = None
    # The classes, in the order model outputs use; file names carry them (`glioma (12).jpg`).
    labels: tuple[str, ...] = ("glioma", "meningioma")
    # Files per mapped task when moving landing -> raw (keeps mapped tasks far below max_map_length).
    move_batch_size: int = 500
    # Seconds between checks of the landing area by the deferrable sensors (on the triggerer).
    sensor_poke_seconds: int = 10
    # Files per mapped task when validating and registering images; None: the registry backend's
    # own size (`register_batch_size` of its class: DuckDB large, one writer at a time; Postgres 500).
    register_batch_size: int | None = None
    # Runs a landing file may fail in (its error is its outcome; the other files move on) before it
    # goes to quarantine; one that cannot even be quarantined is parked in landing, see README.
    ingest_attempts: int = 3
    # Minutes a moving or registering task may run before Airflow fails it (and retries it): a
    # batch of 500 files takes seconds, so only a hung read or a stalled store gets near this, and
    # a continuous DAG never waits on one forever.
    batch_timeout_minutes: int = 30
    # Storage key of a CSV with columns `file,label` that overrides the label in file names; None: names only.
    labels_csv: str | None = None
    # Images with a side shorter than this many pixels are quarantined as too small.
    min_image_side: int = 64
    # Images with more pixels than this are quarantined unread (decompression bombs).
    max_image_pixels: int = 4096 * 4096
    # Base model: a local directory with a HuggingFace checkpoint, or `config:<name>` to build one
    # from a config with no download. A hub id works only where a hub is reachable.
    # Named configs (include/ml/architectures.py): resnet-tiny (the demo default, 1.2M parameters),
    # resnet-18, resnet-50 (ResNetConfig's own default: ~40 min for 30 epochs on 2 CPUs).
    # `production` fine-tunes the promoted bundle (the config until one is promoted).
    model_source: str = "config:resnet-tiny"
    # Folder of trained models, one `save_pretrained` directory per model id (written to a temp
    # name, then renamed).
    models_dir: str = str(DATA_DIR / "models")
    # Folder of the production bundle; the served model is `<production_dir>/current`, swapped
    # atomically on promotion. MRI_MODEL_SOURCE=production fine-tunes from it.
    production_dir: str = str(DATA_DIR / "production")
    # Metric deploy_best_model ranks fine-tuned models by (higher is better), one of
    # SELECTION_METRICS; ties go to F1, then the older model.
    selection_metric: str = "roc_auc"
    # The best model replaces production only if it beats it by more than this, on the same test
    # snapshot and metric (0: any strict improvement). Keeps production from flapping on noise.
    promotion_margin: float = 0.0
    # Where a promoted bundle is also published beyond `<production_dir>/current` (always written:
    # predict and MRI_MODEL_SOURCE=production read it): none, or `storage:<prefix>` to mirror it into
    # the storage layer (MRI_STORAGE_ROOT, e.g. s3://bucket/mri) under that key prefix.
    publish_target: str = "none"
    # Slack Incoming Webhook connection (conn_type slackwebhook) for run notifications; None: only a
    # log line and a JSON file under notifications_dir.
    slack_conn_id: str | None = None
    # Folder every notification is also written to as JSON (one file per event), for people and tools.
    notifications_dir: str = str(DATA_DIR / "notifications")
    # Celery workers `include.airflow_services` starts (separate processes, distinct hostnames)
    # when AIRFLOW__CORE__EXECUTOR is CeleryExecutor; ignored by the other executors.
    celery_workers: int = 2
    # Executor queue of the training task: point it at a queue only big workers (or a pod template
    # with more memory) serve, e.g. `training`; `default` runs it anywhere.
    training_queue: str = "default"
    # Hyperparameters every fine-tune starts from (a sweep entry overrides them); the demo recipe
    # measured on the phantom set, see include/ml/train.py TrainConfig for the rest.
    train_epochs: int = 30
    train_batch_size: int = 32
    train_learning_rate: float = 2e-3
    # Side, in pixels, images are resized to for training and evaluation.
    train_image_size: int = 128
    # The default sweep of train_model (also its `sweep` param): a JSON list of hyperparameter
    # overrides, one fine-tuned model each. Small: `make demo` trains every entry.
    train_sweep: tuple[dict, ...] = ({"learning_rate": 2e-3}, {"learning_rate": 1e-3})
    # Pool of the fine-tune tasks, created at run time with this many slots: training takes every
    # core, so one at a time on a small machine.
    training_pool: str = "mri_training"
    training_pool_slots: int = 1
    # Threads torch uses in a training or evaluation task; 0: torch's default (one per core).
    torch_threads: int = 0
    # Evaluation pictures: <evaluations_dir>/<model_id>/<result_id>/{roc,confusion}.png.
    evaluations_dir: str = str(DATA_DIR / "evaluations")
    # Quality gate (Great Expectations): its file data context, Data Docs and runs index, offline HTML.
    quality_dir: str = str(DATA_DIR / "quality")
    # The gate fails when a class of the snapshot has fewer images than this.
    quality_min_images_per_class: int = 50
    # Class balance: the smallest class must hold at least this fraction of the largest, in [0, 1].
    quality_min_class_ratio: float = 0.5
    # Every image's width and height must lie in [quality_min_side, quality_max_side] pixels.
    quality_min_side: int = 64
    quality_max_side: int = 2048
    # PIL modes the gate accepts (comma-separated in MRI_QUALITY_MODES): by default every mode the
    # registry registers and include.ml.predict.open_image turns into RGB (8/16-bit gray, alpha).
    quality_modes: tuple[str, ...] = ("L", "LA", "RGB", "RGBA", "I", "I;16")
    # Largest share of a split's registry rows that may be quarantined, in [0, 1].
    quality_max_quarantine_rate: float = 0.1


def _get(environ: Mapping[str, str], name: str) -> str | None:
    """An Airflow Variable given as ``AIRFLOW_VAR_<NAME>`` wins over the plain ``<NAME>``."""
    value = environ.get(f"AIRFLOW_VAR_{name}", environ.get(name))
    return value.strip() if value is not None and value.strip() else None


def _number(environ: Mapping[str, str], name: str, default, parse, valid, expected: str):
    """``name`` parsed by ``parse`` and checked by ``valid``; else an error saying what was expected."""
    raw = _get(environ, name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise ConfigError(f"{name}={raw!r} {expected} e.g. {default}.")
    return value


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    return _number(environ, name, default, int, lambda v: v > 0, "is not a positive integer; set it to")


def _fraction(environ: Mapping[str, str], name: str, default: float) -> float:
    return _number(environ, name, default, float, lambda v: 0.0 <= v <= 1.0, "must be a number in [0, 1],")


def _positive_float(environ: Mapping[str, str], name: str, default: float) -> float:
    return _number(environ, name, default, float, lambda v: v > 0, "is not a positive number; set it to")


def _model_source(environ: Mapping[str, str]) -> str:
    from include.ml.architectures import NAMED_CONFIGS

    source = _get(environ, "MRI_MODEL_SOURCE") or Settings.model_source
    if source.startswith("config:") and source.removeprefix("config:") not in NAMED_CONFIGS:
        raise ConfigError(
            f"MRI_MODEL_SOURCE={source!r} names no known config; use one of "
            f"{', '.join('config:' + name for name in NAMED_CONFIGS)}, a checkpoint folder, or 'production'."
        )
    return source


def _train_sweep(environ: Mapping[str, str]) -> tuple[dict, ...]:
    raw = _get(environ, "MRI_TRAIN_SWEEP")
    if raw is None:
        return Settings.train_sweep
    try:
        sweep = json.loads(raw)
    except ValueError:
        sweep = None
    if not isinstance(sweep, list) or not sweep or not all(isinstance(entry, dict) for entry in sweep):
        raise ConfigError(
            f"MRI_TRAIN_SWEEP={raw!r} must be a non-empty JSON list of objects, e.g. "
            '\'[{"learning_rate": 0.002}, {"learning_rate": 0.001}]\'.'
        )
    return tuple(sweep)


def _non_negative_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = _get(environ, name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ConfigError(f"{name}={raw!r} is not a whole number >= 0; set it to e.g. {default}.")
    return int(raw)


def _quality_modes(environ: Mapping[str, str]) -> tuple[str, ...]:
    raw = _get(environ, "MRI_QUALITY_MODES")
    modes = tuple(mode.strip() for mode in raw.split(",") if mode.strip()) if raw else Settings.quality_modes
    if not modes:
        raise ConfigError(f"MRI_QUALITY_MODES={raw!r} lists no PIL mode; set it to e.g. 'L,RGB'.")
    return modes


def _labels(environ: Mapping[str, str]) -> tuple[str, ...]:
    raw = _get(environ, "MRI_LABELS")
    if raw is None:
        return Settings.labels
    labels = tuple(label.strip().lower() for label in raw.split(",") if label.strip())
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ConfigError(
            f"MRI_LABELS={raw!r} must list at least two distinct, comma-separated class names, "
            "e.g. 'glioma,meningioma'."
        )
    bad = [label for label in labels if not label.replace("_", "").replace("-", "").isalnum()]
    if bad:
        raise ConfigError(f"MRI_LABELS has names {bad} with characters other than letters, digits, '-', '_'.")
    return labels


# The metric columns of model_results a model can be selected by (all higher-is-better). The pick
# SQL matches the bound name against this same list; nothing else reaches SQL.
SELECTION_METRICS = ("roc_auc", "f1", "accuracy", "precision", "recall")


def _selection_metric(environ: Mapping[str, str]) -> str:
    raw = _get(environ, "MRI_SELECTION_METRIC")
    if raw is None:
        return Settings.selection_metric
    if raw.lower() not in SELECTION_METRICS:
        raise ConfigError(f"MRI_SELECTION_METRIC={raw!r} is not a metric; use one of {', '.join(SELECTION_METRICS)}.")
    return raw.lower()


def _margin(environ: Mapping[str, str]) -> float:
    raw = _get(environ, "MRI_PROMOTION_MARGIN")
    if raw is None:
        return Settings.promotion_margin
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"MRI_PROMOTION_MARGIN={raw!r} must be a number in [0, 1), e.g. 0.005.")
    return value


def _publish_target(environ: Mapping[str, str]) -> str:
    raw = _get(environ, "MRI_PUBLISH_TARGET")
    if raw is None:
        return Settings.publish_target
    prefix = raw.removeprefix("storage:").strip("/")
    if raw != "none" and (not raw.startswith("storage:") or not prefix):
        raise ConfigError(
            f"MRI_PUBLISH_TARGET={raw!r}: use 'none' (only <MRI_PRODUCTION_DIR>/current) or 'storage:<prefix>', "
            "e.g. 'storage:production' to mirror bundles under MRI_STORAGE_ROOT/production/."
        )
    return raw if raw == "none" else f"storage:{prefix}"


def _storage_root(environ: Mapping[str, str], default: str) -> str:
    """A URI as given; a folder made absolute against the project folder, the same in every process."""
    raw = (_get(environ, "MRI_STORAGE_ROOT") or default).rstrip("/") or "/"
    return raw if "://" in raw else str(PROJECT_ROOT / raw)


def _folder(environ: Mapping[str, str], name: str, default: str) -> str:
    """A folder made absolute against the project folder: every process (scheduler, worker,
    triggerer, each with its own working directory) must mean the same one, and paths stored in
    the registry (models.path) must stay valid."""
    return str(PROJECT_ROOT / (_get(environ, name) or default))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``environ`` (default: the process environment).

    :param environ: a mapping of environment variables, for tests.
    """
    environ = os.environ if environ is None else environ
    defaults = Settings()
    return Settings(
        db_conn_id=_get(environ, "MRI_DB_CONN_ID") or defaults.db_conn_id,
        db_pool=_get(environ, "MRI_DB_POOL") or defaults.db_pool,
        storage_root=_storage_root(environ, defaults.storage_root),
        storage_conn_id=_get(environ, "MRI_STORAGE_CONN_ID"),
        labels=_labels(environ),
        move_batch_size=_positive_int(environ, "MRI_MOVE_BATCH_SIZE", defaults.move_batch_size),
        sensor_poke_seconds=_positive_int(environ, "MRI_SENSOR_POKE_SECONDS", defaults.sensor_poke_seconds),
        register_batch_size=(
            _positive_int(environ, "MRI_REGISTER_BATCH_SIZE", 500) if _get(environ, "MRI_REGISTER_BATCH_SIZE") else None
        ),
        ingest_attempts=_positive_int(environ, "MRI_INGEST_ATTEMPTS", defaults.ingest_attempts),
        batch_timeout_minutes=_positive_int(environ, "MRI_BATCH_TIMEOUT_MINUTES", defaults.batch_timeout_minutes),
        labels_csv=_get(environ, "MRI_LABELS_CSV"),
        min_image_side=_positive_int(environ, "MRI_MIN_IMAGE_SIDE", defaults.min_image_side),
        max_image_pixels=_positive_int(environ, "MRI_MAX_IMAGE_PIXELS", defaults.max_image_pixels),
        model_source=_model_source(environ),
        models_dir=_folder(environ, "MRI_MODELS_DIR", defaults.models_dir),
        production_dir=_folder(environ, "MRI_PRODUCTION_DIR", defaults.production_dir),
        slack_conn_id=_get(environ, "MRI_SLACK_CONN_ID"),
        notifications_dir=_folder(environ, "MRI_NOTIFICATIONS_DIR", defaults.notifications_dir),
        celery_workers=_positive_int(environ, "MRI_CELERY_WORKERS", defaults.celery_workers),
        training_queue=_get(environ, "MRI_TRAINING_QUEUE") or defaults.training_queue,
        train_epochs=_positive_int(environ, "MRI_TRAIN_EPOCHS", defaults.train_epochs),
        train_batch_size=_positive_int(environ, "MRI_TRAIN_BATCH_SIZE", defaults.train_batch_size),
        train_learning_rate=_positive_float(environ, "MRI_TRAIN_LEARNING_RATE", defaults.train_learning_rate),
        train_image_size=_positive_int(environ, "MRI_TRAIN_IMAGE_SIZE", defaults.train_image_size),
        train_sweep=_train_sweep(environ),
        training_pool=_get(environ, "MRI_TRAINING_POOL") or defaults.training_pool,
        training_pool_slots=_positive_int(environ, "MRI_TRAINING_POOL_SLOTS", defaults.training_pool_slots),
        torch_threads=_non_negative_int(environ, "MRI_TORCH_THREADS", defaults.torch_threads),
        evaluations_dir=_folder(environ, "MRI_EVALUATIONS_DIR", defaults.evaluations_dir),
        selection_metric=_selection_metric(environ),
        promotion_margin=_margin(environ),
        publish_target=_publish_target(environ),
        quality_dir=_folder(environ, "MRI_QUALITY_DIR", defaults.quality_dir),
        quality_min_images_per_class=_positive_int(
            environ, "MRI_QUALITY_MIN_IMAGES_PER_CLASS", defaults.quality_min_images_per_class
        ),
        quality_min_class_ratio=_fraction(environ, "MRI_QUALITY_MIN_CLASS_RATIO", defaults.quality_min_class_ratio),
        quality_min_side=_positive_int(environ, "MRI_QUALITY_MIN_SIDE", defaults.quality_min_side),
        quality_max_side=_positive_int(environ, "MRI_QUALITY_MAX_SIDE", defaults.quality_max_side),
        quality_modes=_quality_modes(environ),
        quality_max_quarantine_rate=_fraction(
            environ, "MRI_QUALITY_MAX_QUARANTINE_RATE", defaults.quality_max_quarantine_rate
        ),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()

"""Every setting of the project, each declared once: its environment variable, default, parser and meaning.

Read from the environment only, so DAG files can use it at parse time without touching the
metadata database (Airflow best practice: no ``Variable.get`` at top level). Airflow Variables set
as ``AIRFLOW_VAR_<NAME>`` environment variables are honoured under the same names.

A setting is a field of :class:`Settings` made by :func:`_setting`; :func:`load_settings` walks the
fields, so adding one is one declaration. A parser takes the stripped text of the variable and
returns the value, or raises ``ValueError`` with what was expected and the fix; the loader puts
``NAME='text'`` in front of that and raises :class:`ConfigError`. Variables with the ``MRI_``
prefix that name no setting are ignored, as any other environment variable is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from include.ml import SELECTION_METRICS
from include.ml.hyperparameters import TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
SQL_DIR = PROJECT_ROOT / "sql"
DATA_DIR = PROJECT_ROOT / "data"


class ConfigError(ValueError):
    """A setting has a value the project cannot use; the message names the setting and the fix."""


# (stripped text of the variable, example value for the message) -> the setting's value.
Parser = Callable[[str, Any], Any]


def _setting(env: str, default: Any, parse: Parser, doc: str, *, example: Any = None) -> Any:
    """A field of :class:`Settings`, read from ``env`` (or ``AIRFLOW_VAR_<env>``) by ``parse``.

    :param env: the environment variable, ``MRI_<FIELD NAME>``.
    :param default: the value when the variable is unset or blank.
    :param parse: turns the variable's text into the value, or raises ``ValueError(what is expected)``.
    :param doc: what the setting means, for people.
    :param example: a valid value the error message suggests; the default unless given (a default of
        None, "the backend decides", is no example).
    """
    metadata = {"env": env, "parse": parse, "doc": doc, "example": default if example is None else example}
    return field(default=default, metadata=metadata)


# --- Parsers: each returns the value or raises ValueError with the rest of the message. ----------


def _text(raw: str, example: str) -> str:
    return raw


def _folder(raw: str, example: str) -> str:
    """Absolute against the project folder: every process (scheduler, worker, triggerer, each with
    its own working directory) must mean the same one, and paths stored in the registry
    (models.path) must stay valid."""
    return str(PROJECT_ROOT / raw)


def _storage_root(raw: str, example: str) -> str:
    """A URI as given; a folder made absolute as :func:`_folder` does. No trailing slash."""
    root = raw.rstrip("/") or "/"
    return root if "://" in root else str(PROJECT_ROOT / root)


def _number(convert: Callable[[str], float], valid: Callable[[float], bool], expected: str) -> Parser:
    def parse(raw: str, example: float) -> float:
        try:
            value = convert(raw)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise ValueError(f"{expected} e.g. {example}.")
        return value

    return parse


_positive_int = _number(int, lambda v: v > 0, "is not a positive integer; set it to")
_whole_number = _number(int, lambda v: v >= 0, "is not a whole number >= 0; set it to")
_positive_float = _number(float, lambda v: v > 0, "is not a positive number; set it to")
_fraction = _number(float, lambda v: 0.0 <= v <= 1.0, "must be a number in [0, 1],")
# Of the 256 bits of a perceptual hash: distinct slices of the phantom set were 26 or more apart, and
# the search's cost (include/quality/near_duplicates.py) grows steeply with the bits allowed.
_hash_bits = _number(int, lambda v: 0 <= v <= 24, "must be a whole number of bits in [0, 24],")


def _margin(raw: str, example: float) -> float:
    # 1 or more could never be beaten (scores are at most 1): a typo, not a policy.
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise ValueError("must be a number in [0, 1), e.g. 0.005.")
    return value


def _labels(raw: str, example: tuple[str, ...]) -> tuple[str, ...]:
    labels = tuple(label.strip().lower() for label in raw.split(",") if label.strip())
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"must list at least two distinct, comma-separated class names, e.g. {','.join(example)!r}.")
    bad = [label for label in labels if not label.replace("_", "").replace("-", "").isalnum()]
    if bad:
        raise ValueError(f"has names {bad} with characters other than letters, digits, '-', '_'.")
    return labels


def _pil_modes(raw: str, example: tuple[str, ...]) -> tuple[str, ...]:
    modes = tuple(mode.strip() for mode in raw.split(",") if mode.strip())
    if not modes:
        raise ValueError("lists no PIL mode; set it to e.g. 'L,RGB'.")
    return modes


def _model_source(raw: str, example: str) -> str:
    # Imported when used: everything imports config, and only this check needs include.ml.
    from include.ml.architectures import NAMED_CONFIGS

    if raw.startswith("config:") and raw.removeprefix("config:") not in NAMED_CONFIGS:
        raise ValueError(
            f"names no known config; use one of {', '.join('config:' + name for name in NAMED_CONFIGS)}, "
            "a checkpoint folder, or 'production'."
        )
    return raw


def _selection_metric(raw: str, example: str) -> str:
    if raw.lower() not in SELECTION_METRICS:
        raise ValueError(f"is not a metric; use one of {', '.join(SELECTION_METRICS)}.")
    return raw.lower()


def _publish_target(raw: str, example: str) -> str:
    prefix = raw.removeprefix("storage:").strip("/")
    if raw != "none" and (not raw.startswith("storage:") or not prefix):
        raise ValueError(
            "is not a target; use 'none' (only <MRI_PRODUCTION_DIR>/current) or 'storage:<prefix>', "
            "e.g. 'storage:production' to mirror bundles under MRI_STORAGE_ROOT/production/."
        )
    return raw if raw == "none" else f"storage:{prefix}"


def _train_sweep(raw: str, example: tuple[dict, ...]) -> tuple[dict, ...]:
    try:
        sweep = json.loads(raw)
    except ValueError:
        sweep = None
    if not isinstance(sweep, list) or not sweep or not all(isinstance(entry, dict) for entry in sweep):
        raise ValueError(f"must be a non-empty JSON list of objects, e.g. {json.dumps(list(example))!r}.")
    return tuple(sweep)


# --- The settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The project's settings; each field's metadata holds its ``env`` variable, ``parse`` and ``doc``."""

    db_conn_id: str = _setting(
        "MRI_DB_CONN_ID",
        "mri_db",
        _text,
        "Airflow connection id of the registry database (every Astro SDK Table and SQL task): "
        "conn_type duckdb (embedded, the default) or postgres (parallel writers).",
    )
    db_pool: str = _setting(
        "MRI_DB_POOL",
        "mri_db",
        _text,
        "Pool every task that opens the registry database runs in; `make migrate` sizes it to the "
        "backend's pool_slots (DuckDB 1, Postgres 32), see include/db.",
    )
    storage_root: str = _setting(
        "MRI_STORAGE_ROOT",
        str(DATA_DIR / "storage"),
        _storage_root,
        "Where images live: a local folder path, or s3://bucket/prefix. A relative path is relative to "
        "the project folder (not to each process's working directory: the triggerer, the workers and "
        "`make` start in different ones).",
    )
    storage_conn_id: str | None = _setting(
        "MRI_STORAGE_CONN_ID",
        None,
        _text,
        "Airflow connection for the storage (an `aws` connection for s3://); None for a local folder.",
    )
    labels: tuple[str, ...] = _setting(
        "MRI_LABELS",
        ("glioma", "meningioma"),
        _labels,
        "The classes, comma-separated, in the order model outputs use; file names carry them (`glioma (12).jpg`).",
    )
    move_batch_size: int = _setting(
        "MRI_MOVE_BATCH_SIZE",
        500,
        _positive_int,
        "Files per mapped task when moving landing -> raw (keeps mapped tasks far below max_map_length).",
    )
    sensor_poke_seconds: int = _setting(
        "MRI_SENSOR_POKE_SECONDS",
        10,
        _positive_int,
        "Seconds between checks of the landing area by the deferrable sensors (on the triggerer).",
    )
    register_batch_size: int | None = _setting(
        "MRI_REGISTER_BATCH_SIZE",
        None,
        _positive_int,
        "Files per mapped task when validating and registering images; None: the registry backend's "
        "own size (`register_batch_size` of its class: DuckDB large, one writer at a time; Postgres 500).",
        example=500,
    )
    ingest_attempts: int = _setting(
        "MRI_INGEST_ATTEMPTS",
        3,
        _positive_int,
        "Runs a landing file may fail in (its error is its outcome; the other files move on) before it "
        "goes to quarantine; one that cannot even be quarantined is parked in landing, see README.",
    )
    batch_timeout_minutes: int = _setting(
        "MRI_BATCH_TIMEOUT_MINUTES",
        30,
        _positive_int,
        "Minutes a moving or registering task may run before Airflow fails it (and retries it): a "
        "batch of 500 files takes seconds, so only a hung read or a stalled store gets near this, and "
        "a continuous DAG never waits on one forever.",
    )
    labels_csv: str | None = _setting(
        "MRI_LABELS_CSV",
        None,
        _text,
        "Storage key of a CSV with columns `file,label` that overrides the label in file names, and an optional "
        "`subject` column naming each file's patient or study; None: names (and `subject=<id>` folders) only.",
    )
    min_image_side: int = _setting(
        "MRI_MIN_IMAGE_SIDE",
        64,
        _positive_int,
        "Images with a side shorter than this many pixels are quarantined as too small.",
    )
    max_image_pixels: int = _setting(
        "MRI_MAX_IMAGE_PIXELS",
        4096 * 4096,
        _positive_int,
        "Images with more pixels than this are quarantined unread (decompression bombs).",
    )
    max_upload_bytes: int = _setting(
        "MRI_MAX_UPLOAD_BYTES",
        64 * 1024 * 1024,
        _positive_int,
        "Files larger than this many bytes, by the size their store lists, are quarantined unread: "
        "ingestion and registration hold a file in memory, and one of several GB would exhaust a worker.",
    )
    model_source: str = _setting(
        "MRI_MODEL_SOURCE",
        "config:resnet-tiny",
        _model_source,
        "Base model: a local directory with a HuggingFace checkpoint, or `config:<name>` to build one "
        "from a config with no download. A hub id works only where a hub is reachable. "
        "Named configs (include/ml/architectures.py): resnet-tiny (the demo default, 1.2M parameters), "
        "resnet-18, resnet-50 (ResNetConfig's own default: ~40 min for 30 epochs on 2 CPUs). "
        "`production` fine-tunes the promoted bundle (the config until one is promoted).",
    )
    models_dir: str = _setting(
        "MRI_MODELS_DIR",
        str(DATA_DIR / "models"),
        _folder,
        "Folder of trained models, one `save_pretrained` directory per model id (written to a temp "
        "name, then renamed).",
    )
    production_dir: str = _setting(
        "MRI_PRODUCTION_DIR",
        str(DATA_DIR / "production"),
        _folder,
        "Folder of the production bundle; the served model is `<production_dir>/current`, swapped "
        "atomically on promotion. MRI_MODEL_SOURCE=production fine-tunes from it.",
    )
    selection_metric: str = _setting(
        "MRI_SELECTION_METRIC",
        "roc_auc",
        _selection_metric,
        "Metric deploy_best_model chooses by (higher is better), one of SELECTION_METRICS: the newest "
        "sweep's models are ranked by it on their validation holdout (ties: validation loss, then the "
        "older model); the test snapshot confirms the choice against production and the baseline.",
    )
    promotion_margin: float = _setting(
        "MRI_PROMOTION_MARGIN",
        0.0,
        _margin,
        "The chosen model replaces production only if the lower end of the 95% paired-bootstrap "
        "interval of its gain (same test snapshot and metric) is above this (0: a gain larger than "
        "chance). Keeps production from flapping on noise.",
    )
    bootstrap_resamples: int = _setting(
        "MRI_BOOTSTRAP_RESAMPLES",
        2000,
        _positive_int,
        "Resamples (within class, seeded) behind every 95% interval: each result's ROC AUC and "
        "accuracy, and a promotion's gain over production.",
    )
    min_gain_over_baseline: float = _setting(
        "MRI_MIN_GAIN_OVER_BASELINE",
        0.05,
        _margin,
        "A model is promoted only if it beats the untrained baseline (test_baseline_model) by at least "
        "this, on the same test snapshot and MRI_SELECTION_METRIC (default 0.05 ROC AUC); without a "
        "baseline result on that snapshot nothing is promoted.",
    )
    publish_target: str = _setting(
        "MRI_PUBLISH_TARGET",
        "none",
        _publish_target,
        "Where a promoted bundle is also published beyond `<production_dir>/current` (always written: "
        "predict and MRI_MODEL_SOURCE=production read it): none, or `storage:<prefix>` to mirror it into "
        "the storage layer (MRI_STORAGE_ROOT, e.g. s3://bucket/mri) under that key prefix.",
    )
    slack_conn_id: str | None = _setting(
        "MRI_SLACK_CONN_ID",
        None,
        _text,
        "Slack Incoming Webhook connection (conn_type slackwebhook) for run notifications; None: only a "
        "log line and a JSON file under notifications_dir.",
    )
    notifications_dir: str = _setting(
        "MRI_NOTIFICATIONS_DIR",
        str(DATA_DIR / "notifications"),
        _folder,
        "Folder every notification is also written to as JSON (one file per event), for people and tools.",
    )
    celery_workers: int = _setting(
        "MRI_CELERY_WORKERS",
        2,
        _positive_int,
        "Celery workers `launcher.services` starts (separate processes, distinct hostnames) when "
        "AIRFLOW__CORE__EXECUTOR is CeleryExecutor; ignored by the other executors.",
    )
    training_queue: str = _setting(
        "MRI_TRAINING_QUEUE",
        "default",
        _text,
        "Executor queue of the training task: point it at a queue only big workers (or a pod template "
        "with more memory) serve, e.g. `training`; `default` runs it anywhere.",
    )
    # The base hyperparameters: their defaults are TrainConfig's (include/ml/hyperparameters.py),
    # the demo recipe measured on the phantom set, which also has the others.
    train_epochs: int = _setting(
        "MRI_TRAIN_EPOCHS",
        TrainConfig.epochs,
        _positive_int,
        "Epochs every fine-tune starts from (a sweep entry overrides it).",
    )
    train_batch_size: int = _setting(
        "MRI_TRAIN_BATCH_SIZE",
        TrainConfig.batch_size,
        _positive_int,
        "Images per optimizer step every fine-tune starts from (a sweep entry overrides it).",
    )
    train_learning_rate: float = _setting(
        "MRI_TRAIN_LEARNING_RATE",
        TrainConfig.learning_rate,
        _positive_float,
        "Peak learning rate every fine-tune starts from (a sweep entry overrides it).",
    )
    train_image_size: int = _setting(
        "MRI_TRAIN_IMAGE_SIZE",
        TrainConfig.image_size,
        _positive_int,
        "Side, in pixels, images are resized to for training and evaluation.",
    )
    train_sweep: tuple[dict, ...] = _setting(
        "MRI_TRAIN_SWEEP",
        ({"learning_rate": 2e-3}, {"learning_rate": 1e-3}),
        _train_sweep,
        "The default sweep of train_model (also its `sweep` param): a JSON list of hyperparameter "
        'overrides, one fine-tuned model each (`"seeds": [0, 1, 2]` in an entry: one per seed, and their '
        "spread). Small: `make demo` trains every entry.",
    )
    training_pool: str = _setting(
        "MRI_TRAINING_POOL",
        "mri_training",
        _text,
        "Pool of the fine-tune tasks, created at run time with training_pool_slots slots.",
    )
    training_pool_slots: int = _setting(
        "MRI_TRAINING_POOL_SLOTS",
        1,
        _positive_int,
        "Fine-tunes that run at once: training takes every core, so one at a time on a small machine.",
    )
    torch_threads: int = _setting(
        "MRI_TORCH_THREADS",
        2,
        _whole_number,
        "Threads torch uses in a training or evaluation task, pinned because the thread count changes "
        "a run's numbers from its first epoch (recorded in mri_model.json); 0: torch's default (one per core).",
    )
    evaluations_dir: str = _setting(
        "MRI_EVALUATIONS_DIR",
        str(DATA_DIR / "evaluations"),
        _folder,
        "Evaluation pictures: <evaluations_dir>/<model_id>/<result_id>/{roc,confusion}.png.",
    )
    quality_dir: str = _setting(
        "MRI_QUALITY_DIR",
        str(DATA_DIR / "quality"),
        _folder,
        "Quality gate (Great Expectations): its file data context, Data Docs and runs index, offline HTML.",
    )
    quality_min_images_per_class: int = _setting(
        "MRI_QUALITY_MIN_IMAGES_PER_CLASS",
        50,
        _positive_int,
        "The gate fails when a class of the snapshot has fewer images than this.",
    )
    quality_min_class_ratio: float = _setting(
        "MRI_QUALITY_MIN_CLASS_RATIO",
        0.5,
        _fraction,
        "Class balance: the smallest class must hold at least this fraction of the largest, in [0, 1].",
    )
    quality_min_side: int = _setting(
        "MRI_QUALITY_MIN_SIDE",
        64,
        _positive_int,
        "Every image's width and height must be at least this many pixels (and at most quality_max_side).",
    )
    quality_max_side: int = _setting(
        "MRI_QUALITY_MAX_SIDE",
        2048,
        _positive_int,
        "Every image's width and height must be at most this many pixels.",
    )
    quality_modes: tuple[str, ...] = _setting(
        "MRI_QUALITY_MODES",
        ("L", "LA", "RGB", "RGBA", "I", "I;16"),
        _pil_modes,
        "PIL modes the gate accepts, comma-separated: by default every mode the registry registers and "
        "include.ml.predict.open_image turns into RGB (8/16-bit gray, alpha).",
    )
    quality_max_quarantine_rate: float = _setting(
        "MRI_QUALITY_MAX_QUARANTINE_RATE",
        0.1,
        _fraction,
        "Largest share of a split's registry rows that may be quarantined, in [0, 1].",
    )
    quality_near_duplicate_bits: int = _setting(
        "MRI_QUALITY_NEAR_DUPLICATE_BITS",
        12,
        _hash_bits,
        "The gate fails on near-duplicates across splits: an image whose 256-bit perceptual hash differs "
        "from that of an image of the other split in at most this many bits (a resized or re-compressed "
        "copy; the same pixels are leakage). 0: equal hashes only.",
    )


def _get(environ: Mapping[str, str], name: str) -> str | None:
    """An Airflow Variable given as ``AIRFLOW_VAR_<NAME>`` wins over the plain ``<NAME>`` (even when
    blank, which means the default); surrounding whitespace is dropped."""
    value = environ.get(f"AIRFLOW_VAR_{name}", environ.get(name))
    return value.strip() if value is not None and value.strip() else None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``environ`` (default: the process environment).

    :param environ: a mapping of environment variables, for tests.
    :raises ConfigError: a variable is set to a value its setting cannot use.
    """
    environ = os.environ if environ is None else environ
    values = {}
    for setting in fields(Settings):
        env = setting.metadata["env"]
        raw = _get(environ, env)
        if raw is None:
            continue
        try:
            values[setting.name] = setting.metadata["parse"](raw, setting.metadata["example"])
        except ValueError as error:
            raise ConfigError(f"{env}={raw!r} {error}") from None
    return Settings(**values)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()

import dataclasses
import json
import subprocess
import sys

import pytest

from include.config import PROJECT_ROOT, ConfigError, Settings, load_settings, settings


def test_defaults_use_embedded_duckdb_and_local_folder():
    settings = load_settings({})
    assert settings.db_conn_id == "mri_db"
    assert settings.storage_conn_id is None
    assert settings.storage_root.endswith("data/storage")
    assert settings.labels == ("glioma", "meningioma")


def test_airflow_variable_env_wins_over_plain_name():
    env = {"MRI_DB_CONN_ID": "plain", "AIRFLOW_VAR_MRI_DB_CONN_ID": "mri_pg"}
    assert load_settings(env).db_conn_id == "mri_pg"


def test_one_variable_swaps_the_backend_and_nothing_else():
    swapped = load_settings({"AIRFLOW_VAR_MRI_DB_CONN_ID": "mri_pg"})
    assert swapped == Settings(db_conn_id="mri_pg")


def test_label_set_is_configuration():
    env = {"MRI_LABELS": " Glioma, meningioma ,pituitary"}
    assert load_settings(env).labels == ("glioma", "meningioma", "pituitary")


@pytest.mark.parametrize("raw", ["glioma", "glioma,glioma", "glioma,men'); drop table images;--"])
def test_bad_label_set_names_the_variable(raw):
    with pytest.raises(ConfigError, match="MRI_LABELS"):
        load_settings({"MRI_LABELS": raw})


@pytest.mark.parametrize("raw", ["0", "-3", "many"])
def test_batch_size_must_be_a_positive_integer(raw):
    with pytest.raises(ConfigError, match=r"MRI_MOVE_BATCH_SIZE='.*' is not a positive integer"):
        load_settings({"MRI_MOVE_BATCH_SIZE": raw})


def test_storage_root_trailing_slash_is_dropped():
    settings = load_settings({"MRI_STORAGE_ROOT": "s3://bucket/mri/", "MRI_STORAGE_CONN_ID": "minio"})
    assert (settings.storage_root, settings.storage_conn_id) == ("s3://bucket/mri", "minio")


@pytest.mark.parametrize(
    "name", ["MRI_MODELS_DIR", "MRI_PRODUCTION_DIR", "MRI_EVALUATIONS_DIR", "MRI_QUALITY_DIR", "MRI_NOTIFICATIONS_DIR"]
)
def test_a_relative_folder_means_the_same_place_from_any_working_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a worker or the triggerer starts elsewhere
    attribute = name.removeprefix("MRI_").lower()

    assert getattr(load_settings({name: "data/elsewhere"}), attribute) == str(PROJECT_ROOT / "data/elsewhere")
    assert getattr(load_settings({name: "/srv/mri"}), attribute) == "/srv/mri"


# --- One declaration per setting (issue 18): what the loader that walks the fields must keep ----

# A valid value other than the default for every setting, and what it loads as. Its keys are every
# field name: a renamed or new setting fails test_every_setting_has_a_sample until added here.
SAMPLES = {
    "db_conn_id": ("mri_pg", "mri_pg"),
    "db_pool": ("mri_pg_pool", "mri_pg_pool"),
    "storage_root": ("s3://bucket/mri/", "s3://bucket/mri"),
    "storage_conn_id": ("minio", "minio"),
    "labels": ("Glioma,meningioma, pituitary", ("glioma", "meningioma", "pituitary")),
    "move_batch_size": ("50", 50),
    "sensor_poke_seconds": ("2", 2),
    "register_batch_size": ("250", 250),
    "ingest_attempts": ("5", 5),
    "batch_timeout_minutes": ("7", 7),
    "labels_csv": ("labels.csv", "labels.csv"),
    "min_image_side": ("32", 32),
    "max_image_pixels": ("1000000", 1_000_000),
    "max_upload_bytes": ("1048576", 1_048_576),
    "model_source": ("production", "production"),
    "models_dir": ("/srv/models", "/srv/models"),
    "production_dir": ("/srv/production", "/srv/production"),
    "selection_metric": ("F1", "f1"),
    "promotion_margin": ("0.005", 0.005),
    "bootstrap_resamples": ("500", 500),
    "min_gain_over_baseline": ("0.1", 0.1),
    "publish_target": ("storage:/production/", "storage:production"),
    "slack_conn_id": ("slack", "slack"),
    "notifications_dir": ("/srv/notifications", "/srv/notifications"),
    "celery_workers": ("4", 4),
    "training_queue": ("training", "training"),
    "train_epochs": ("3", 3),
    "train_batch_size": ("8", 8),
    "train_learning_rate": ("1e-4", 1e-4),
    "train_image_size": ("64", 64),
    "train_sweep": ('[{"epochs": 1}]', ({"epochs": 1},)),
    "training_pool": ("big_machines", "big_machines"),
    "training_pool_slots": ("2", 2),
    "torch_threads": ("2", 2),
    "evaluations_dir": ("/srv/evaluations", "/srv/evaluations"),
    "quality_dir": ("/srv/quality", "/srv/quality"),
    "quality_min_images_per_class": ("10", 10),
    "quality_min_class_ratio": ("0.25", 0.25),
    "quality_min_side": ("32", 32),
    "quality_max_side": ("1024", 1024),
    "quality_modes": ("L, RGB", ("L", "RGB")),
    "quality_max_quarantine_rate": ("0", 0.0),
    "quality_near_duplicate_bits": ("0", 0),
}


def test_every_setting_has_a_sample():
    assert [f.name for f in dataclasses.fields(Settings)] == list(SAMPLES)


@pytest.mark.parametrize("setting", dataclasses.fields(Settings), ids=lambda f: f.name)
def test_every_setting_declares_its_variable_parser_and_meaning(setting):
    # MRI_<NAME>: the names README, docker-compose.yaml and AIRFLOW_VAR_<NAME> Variables use.
    assert setting.metadata["env"] == f"MRI_{setting.name.upper()}"
    assert callable(setting.metadata["parse"])
    doc = setting.metadata["doc"]
    assert isinstance(doc, str) and len(doc) > 20 and doc.endswith("."), doc


@pytest.mark.parametrize("prefix", ["", "AIRFLOW_VAR_"])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_variable_sets_its_own_setting_and_nothing_else(name, prefix):
    raw, expected = SAMPLES[name]
    loaded = load_settings({f"{prefix}MRI_{name.upper()}": raw})
    assert loaded == dataclasses.replace(Settings(), **{name: expected})


def render(value) -> str:
    """A default written the way an operator would set it."""
    if isinstance(value, tuple):
        return ",".join(value) if all(isinstance(v, str) for v in value) else json.dumps(list(value))
    return str(value)


def test_every_default_is_a_value_its_own_parser_accepts():
    """A default is not parsed when the variable is unset, so a bad one would only fail when set."""
    defaults = Settings()
    env = {
        f"MRI_{f.name.upper()}": render(getattr(defaults, f.name))
        for f in dataclasses.fields(Settings)
        if getattr(defaults, f.name) is not None
    }
    assert load_settings(env) == defaults


def test_a_variable_that_names_no_setting_is_ignored():
    """Today's behaviour, kept: a typo'd name leaves the default (the compose test relies on it to
    find names that are not settings), like any other environment variable."""
    env = {"MRI_TRAIN_EPOCH": "5", "AIRFLOW_VAR_MRI_NO_SUCH_SETTING": "x", "MRI_DB_PASSWORD": "secret", "PATH": "/bin"}
    assert load_settings(env) == Settings()


def test_blank_means_the_default_and_whitespace_is_dropped():
    assert load_settings({"MRI_MOVE_BATCH_SIZE": "  ", "MRI_TRAINING_QUEUE": ""}) == Settings()
    assert load_settings({"MRI_MOVE_BATCH_SIZE": " 7\n"}).move_batch_size == 7


def test_a_blank_airflow_variable_still_hides_the_plain_name():
    """The AIRFLOW_VAR_ name wins whenever it is present, even blank (then: the default)."""
    for blank in ("", " "):
        assert load_settings({"AIRFLOW_VAR_MRI_TRAIN_EPOCHS": blank, "MRI_TRAIN_EPOCHS": "3"}).train_epochs == 50


def _model_configs() -> str:
    from include.ml.architectures import NAMED_CONFIGS

    return ", ".join(f"config:{name}" for name in NAMED_CONFIGS)


# One bad value per kind of parser, and the whole message: the setting, what was got, what is expected, the fix.
BAD_VALUES = [
    ("MRI_MOVE_BATCH_SIZE", "0", "MRI_MOVE_BATCH_SIZE='0' is not a positive integer; set it to e.g. 500."),
    ("MRI_MAX_IMAGE_PIXELS", "1e6", "MRI_MAX_IMAGE_PIXELS='1e6' is not a positive integer; set it to e.g. 16777216."),
    # No default (the backend decides), so the example is its own.
    (
        "MRI_REGISTER_BATCH_SIZE",
        "many",
        "MRI_REGISTER_BATCH_SIZE='many' is not a positive integer; set it to e.g. 500.",
    ),
    ("MRI_TORCH_THREADS", "-1", "MRI_TORCH_THREADS='-1' is not a whole number >= 0; set it to e.g. 2."),
    ("MRI_TORCH_THREADS", "²", "MRI_TORCH_THREADS='²' is not a whole number >= 0; set it to e.g. 2."),
    ("MRI_TRAIN_LEARNING_RATE", "0", "MRI_TRAIN_LEARNING_RATE='0' is not a positive number; set it to e.g. 0.002."),
    ("MRI_QUALITY_MIN_CLASS_RATIO", "1.5", "MRI_QUALITY_MIN_CLASS_RATIO='1.5' must be a number in [0, 1], e.g. 0.5."),
    (
        "MRI_QUALITY_MAX_QUARANTINE_RATE",
        "nan",
        "MRI_QUALITY_MAX_QUARANTINE_RATE='nan' must be a number in [0, 1], e.g. 0.1.",
    ),
    ("MRI_PROMOTION_MARGIN", "1", "MRI_PROMOTION_MARGIN='1' must be a number in [0, 1), e.g. 0.005."),
    ("MRI_PROMOTION_MARGIN", "half", "MRI_PROMOTION_MARGIN='half' must be a number in [0, 1), e.g. 0.005."),
    (
        "MRI_SELECTION_METRIC",
        "loss",
        "MRI_SELECTION_METRIC='loss' is not a metric; use one of roc_auc, f1, accuracy, precision, recall.",
    ),
    (
        "MRI_TRAIN_SWEEP",
        '{"learning_rate": 0.1}',
        "MRI_TRAIN_SWEEP='{\"learning_rate\": 0.1}' must be a non-empty JSON list of objects, "
        'e.g. \'[{"learning_rate": 0.002}, {"learning_rate": 0.001}]\'.',
    ),
    ("MRI_QUALITY_MODES", " , ", "MRI_QUALITY_MODES=',' lists no PIL mode; set it to e.g. 'L,RGB'."),
    (
        "MRI_LABELS",
        "glioma",
        "MRI_LABELS='glioma' must list at least two distinct, comma-separated class names, e.g. 'glioma,meningioma'.",
    ),
    (
        "MRI_LABELS",
        "glioma,a;b",
        "MRI_LABELS='glioma,a;b' has names ['a;b'] with characters other than letters, digits, '-', '_'.",
    ),
    (
        "MRI_PUBLISH_TARGET",
        "s3://bucket/mri",
        "MRI_PUBLISH_TARGET='s3://bucket/mri' is not a target; use 'none' (only <MRI_PRODUCTION_DIR>/current) or "
        "'storage:<prefix>', e.g. 'storage:production' to mirror bundles under MRI_STORAGE_ROOT/production/.",
    ),
    (
        "MRI_MODEL_SOURCE",
        "config:resnet50",
        "MRI_MODEL_SOURCE='config:resnet50' names no known config; use one of {configs}, a checkpoint folder, "
        "or 'production'.",
    ),
]


@pytest.mark.parametrize("prefix", ["", "AIRFLOW_VAR_"])
@pytest.mark.parametrize(("name", "raw", "message"), BAD_VALUES)
def test_a_bad_value_names_its_variable_what_was_expected_and_the_fix(name, raw, message, prefix):
    with pytest.raises(ConfigError) as error:
        load_settings({f"{prefix}{name}": raw})
    # Named by the setting's name even when it came as an Airflow Variable.
    assert str(error.value) == message.replace("{configs}", _model_configs())
    assert error.value.__cause__ is None and error.value.__suppress_context__  # no parser traceback


def test_settings_are_read_once_per_process_until_the_cache_is_cleared(monkeypatch):
    monkeypatch.setenv("MRI_TRAINING_QUEUE", "first")
    settings.cache_clear()
    try:
        first = settings()
        monkeypatch.setenv("MRI_TRAINING_QUEUE", "second")
        assert settings() is first and first.training_queue == "first"
        settings.cache_clear()
        assert settings().training_queue == "second"
    finally:
        settings.cache_clear()  # the next caller reads the restored environment


def test_loading_settings_imports_neither_airflow_nor_torch():
    """DAG files read settings at parse time: the environment only, no Variable lookup, no ML stack."""
    code = (
        "import sys; from include.config import load_settings; "
        "load_settings({'MRI_MODEL_SOURCE': 'config:resnet-18'}); "
        "print(sorted(m for m in ('airflow', 'torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

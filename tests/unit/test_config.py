import pytest

from include.config import ConfigError, Settings, load_settings


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
    from include.config import PROJECT_ROOT

    monkeypatch.chdir(tmp_path)  # a worker or the triggerer starts elsewhere
    attribute = name.removeprefix("MRI_").lower()

    assert getattr(load_settings({name: "data/elsewhere"}), attribute) == str(PROJECT_ROOT / "data/elsewhere")
    assert getattr(load_settings({name: "/srv/mri"}), attribute) == "/srv/mri"

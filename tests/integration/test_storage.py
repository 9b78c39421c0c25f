"""The storage interface on a local folder and on a real S3 API endpoint (moto over HTTP)."""

import pytest

from include.storage import StorageUnavailableError, get_storage


def test_list_is_recursive_sorted_and_skips_unfinished_uploads(storage_settings):
    storage = get_storage()
    for key in [
        "landing/train/b.jpg",
        "landing/train/sub/a.jpg",
        "landing/train/.hidden.jpg",
        "landing/train/c.jpg.part",
        "landing/train/.staging/glioma (1).jpg",  # an uploader's hidden staging folder
    ]:
        storage.write(key, b"x")
    storage.write("landing/test/other.jpg", b"x")

    assert [o.key for o in storage.list("landing/train")] == ["landing/train/b.jpg", "landing/train/sub/a.jpg"]


def test_copy_new_never_overwrites(storage_settings):
    storage = get_storage()
    storage.write("a.jpg", b"first")
    storage.write("b.jpg", b"second")

    assert storage.copy_new("a.jpg", "raw/a.jpg") is True
    assert storage.copy_new("b.jpg", "raw/a.jpg") is False
    assert storage.read("raw/a.jpg") == b"first"


def test_delete_removes_exactly_one_key(storage_settings):
    storage = get_storage()
    for key in ["landing/train/a.jpg", "landing/train/a.jpg2", "landing/train/a/b.jpg"]:
        storage.write(key, b"x")
    storage.delete("landing/train/a.jpg")
    assert [o.key for o in storage.list("landing")] == ["landing/train/a.jpg2", "landing/train/a/b.jpg"]


def test_read_head_reads_only_the_first_bytes(storage_settings):
    storage = get_storage()
    storage.write("k.bin", b"0123456789")
    assert storage.read("k.bin", 4) == b"0123"
    assert storage.read("k.bin") == b"0123456789"


def test_unsupported_scheme_is_named():
    with pytest.raises(ValueError, match="Unsupported scheme 'gs' in MRI_STORAGE_ROOT 'gs://b/p'"):
        get_storage("gs://b/p", "x")


def test_s3_root_without_connection_names_the_setting():
    with pytest.raises(ValueError, match="needs MRI_STORAGE_CONN_ID"):
        get_storage("s3://bucket/p", None)


def test_unreachable_s3_endpoint_names_the_connection(s3_root, s3_relay, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    storage = get_storage(s3_root, "test_s3")
    s3_relay.cut()
    with pytest.raises(
        StorageUnavailableError,
        match=r"S3 endpoint http://127.0.0.1:\d+ of MRI_STORAGE_CONN_ID 'test_s3' is unreachable",
    ):
        storage.list("landing/train")


def test_local_landing_trigger_ignores_unfinished_uploads_until_renamed(tmp_path):
    import asyncio

    from include.storage.local_sensor import LandingFolderTrigger

    landing = tmp_path / "landing" / "train"
    landing.mkdir(parents=True)
    (landing / "glioma (1).jpg.part").write_bytes(b"half an upload")
    trigger = LandingFolderTrigger(str(landing), poke_interval=0.05)

    async def first_event(timeout: float):
        return await asyncio.wait_for(trigger.run().__anext__(), timeout)

    with pytest.raises(TimeoutError):
        asyncio.run(first_event(0.5))
    (landing / "glioma (1).jpg.part").rename(landing / "glioma (1).jpg")
    assert asyncio.run(first_event(5)).payload == {"folder": str(landing)}

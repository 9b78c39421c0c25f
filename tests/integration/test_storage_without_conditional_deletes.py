"""Releasing a claim on an S3 API without conditional deletes (a DELETE with If-Match answered
``NotImplemented``): the store compares the ETag, then deletes, and still never deletes a new upload."""

import pytest

from include.storage import get_storage
from tests.support.s3 import WithoutConditionalDeletes


@pytest.fixture
def s3_relay(s3_endpoint: str):
    """Overrides conftest's: the bucket of ``s3_root`` is reached through an endpoint without conditional deletes."""
    endpoint = WithoutConditionalDeletes(int(s3_endpoint.rsplit(":", 1)[1]))
    yield endpoint
    endpoint.close()


@pytest.fixture
def storage(s3_root: str):
    return get_storage(s3_root, "test_s3")


def test_a_released_claim_is_deleted_after_comparing_its_etag(storage, s3_relay):
    storage.write("landing/train/a.jpg", b"scan")
    claim = storage.claim("landing/train/a.jpg")

    assert storage.release(claim) is True

    assert s3_relay.refused == 1  # the conditional delete was tried, and refused
    assert not storage.exists("landing/train/a.jpg")


def test_a_new_upload_under_the_claimed_name_is_never_deleted(storage, s3_relay):
    storage.write("landing/train/a.jpg", b"scan")
    claim = storage.claim("landing/train/a.jpg")
    storage.write("landing/train/a.jpg", b"another scan, uploaded after the claim")

    assert storage.release(claim) is False

    assert s3_relay.refused == 1
    assert storage.read("landing/train/a.jpg") == b"another scan, uploaded after the claim"

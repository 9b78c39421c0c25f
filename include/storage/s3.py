"""Any S3 API (AWS, MinIO, Ceph...) through an Airflow `aws` connection; `endpoint_url` in its extra."""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Any

from include.storage.base import Claim, Storage, StorageUnavailableError, StoredObject, TooLargeError, visible

# S3 error codes that mean "no such key" (the HEAD of a missing key has no body, hence "404").
MISSING = ("404", "NoSuchKey", "NotFound")
# What sha256 holds of an object at a time.
READ_CHUNK_BYTES = 1024 * 1024


def object_size(response: dict) -> int:
    """The whole object's size from a GET response: a ranged GET's Content-Range ends in it."""
    content_range = response.get("ContentRange")  # bytes 0-7/3221225472
    return int(content_range.rpartition("/")[2]) if content_range else response["ContentLength"]


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``)."""
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ValueError(f"Expected s3://bucket[/prefix], got {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


class S3Storage(Storage):
    scheme = "s3"

    @cached_property
    def _bucket_and_prefix(self) -> tuple[str, str]:
        return split_s3_uri(self.root)

    def _key(self, key: str) -> str:
        prefix = self._bucket_and_prefix[1]
        return f"{prefix}/{key}" if prefix else key

    @cached_property
    def hook(self):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.conn_id)

    @cached_property
    def client(self) -> Any:
        from include.wiring.compat import AirflowNotFoundException, BaseHook

        # Without this check the hook falls back to ambient AWS credentials and every call fails
        # later with a boto error that names no setting.
        try:
            BaseHook.get_connection(self.conn_id)
        except AirflowNotFoundException:
            raise StorageUnavailableError(
                f"MRI_STORAGE_CONN_ID {self.conn_id!r} is not a defined Airflow connection. Define it "
                f"(AIRFLOW_CONN_{str(self.conn_id).upper()} or airflow_settings.yaml) as an `aws` connection "
                f"with endpoint_url in its extra, or set MRI_STORAGE_CONN_ID to one that exists (root {self.root})."
            ) from None
        return self.hook.get_conn()

    def _call(self, operation: str, **kwargs: Any) -> Any:
        """One S3 call; an unreachable endpoint becomes an error that names the setting to check."""
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except (BotoConnectionError, HTTPClientError) as err:  # refused, reset, closed mid-response
            raise StorageUnavailableError(
                f"S3 endpoint {self.client.meta.endpoint_url} of MRI_STORAGE_CONN_ID {self.conn_id!r} is "
                f"unreachable during {operation} ({err}). Check that the S3 service is up and the "
                "connection's endpoint_url; files not yet copied stay in landing."
            ) from err

    def list(self, prefix: str) -> list[StoredObject]:
        bucket, root_prefix = self._bucket_and_prefix
        full_prefix = self._key(prefix.strip("/")) + "/"
        found, token = [], None
        while True:
            page = self._call(
                "list_objects_v2", Bucket=bucket, Prefix=full_prefix, **({"ContinuationToken": token} if token else {})
            )
            for item in page.get("Contents", []):
                key = item["Key"][len(root_prefix) + 1 :] if root_prefix else item["Key"]
                found.append(StoredObject(key, item["Size"]))  # folder markers ("x/") have no name: not visible
            if not page.get("IsTruncated"):
                return visible(found)
            token = page["NextContinuationToken"]

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self._call("head_object", Bucket=self._bucket_and_prefix[0], Key=self._key(key))
        except ClientError as err:
            if err.response["Error"]["Code"] in MISSING:
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def read(self, key: str, length: int | None = None, max_bytes: int | None = None) -> bytes:
        from botocore.exceptions import ClientError

        extra = {"Range": f"bytes=0-{length - 1}"} if length else {}
        try:
            response = self._call("get_object", Bucket=self._bucket_and_prefix[0], Key=self._key(key), **extra)
        except ClientError as err:
            if err.response["Error"]["Code"] == "InvalidRange":  # a range of an empty object
                return b""
            raise
        # The size comes with the response's headers, before its body: too large, the body is never read.
        if max_bytes is not None and (size := object_size(response)) > max_bytes:
            response["Body"].close()
            raise TooLargeError(size, max_bytes)
        return response["Body"].read()

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        body = self._call("get_object", Bucket=self._bucket_and_prefix[0], Key=self._key(key))["Body"]
        for chunk in body.iter_chunks(READ_CHUNK_BYTES):
            digest.update(chunk)
        return digest.hexdigest()

    def write(self, key: str, data: bytes) -> None:
        self._call("put_object", Bucket=self._bucket_and_prefix[0], Key=self._key(key), Body=data)

    def copy_new(self, source: str, destination: str, source_tag: str | None = None) -> bool:
        # S3 has no create-if-absent copy on every S3 API; one mover per landing prefix
        # (max_active_runs=1, disjoint batches) keeps check-then-copy free of races.
        if self.exists(destination):
            return False
        bucket = self._bucket_and_prefix[0]
        # CopySourceIfMatch: a source replaced since it was claimed fails the copy (412) instead
        # of copying bytes the mover never inspected; the file then waits for the next run.
        condition = {"CopySourceIfMatch": source_tag} if source_tag else {}
        self._call(
            "copy_object",
            Bucket=bucket,
            Key=self._key(destination),
            CopySource={"Bucket": bucket, "Key": self._key(source)},
            **condition,
        )
        return True

    def delete(self, key: str) -> None:
        self._call("delete_object", Bucket=self._bucket_and_prefix[0], Key=self._key(key))

    def claim(self, key: str) -> Claim | None:
        # No rename on S3: the claim is the ETag; copy and delete then act on that version only.
        head = self._head(key)
        return None if head is None else Claim(key, tag=head["ETag"])

    def release(self, claim: Claim) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = self._bucket_and_prefix[0], self._key(claim.key)
        try:
            # If-Match: a new upload under the same name since the copy has another ETag and stays.
            self._call("delete_object", Bucket=bucket, Key=key, IfMatch=claim.tag)
        except ClientError as err:
            code = err.response["Error"]["Code"]
            if code in ("PreconditionFailed", "412"):
                return False
            if code == "NotImplemented":  # an S3 API without conditional deletes: compare, then delete
                head = self._head(claim.key)
                if head is not None and head["ETag"] != claim.tag:
                    return False
                self.delete(claim.key)
            elif code not in MISSING:
                raise
        return True

    def landing_sensor(self, task_id: str, prefix: str, poke_interval: float):
        from include.storage.landing_sensor import LandingSensor

        return LandingSensor(
            task_id=task_id, root=self.root, conn_id=self.conn_id, prefix=prefix, poke_interval=poke_interval
        )

"""The image store behind MRI_STORAGE_ROOT, picked by the root's URI scheme.

A local folder by default; ``s3://bucket/prefix`` with an `aws` connection for any S3 API.
A new kind of store is a new module and one line in ``BACKENDS``.
"""

from __future__ import annotations

from include.storage.base import Storage, StorageUnavailableError, StoredObject
from include.storage.local import LocalStorage
from include.storage.s3 import S3Storage

BACKENDS: dict[str, type[Storage]] = {cls.scheme: cls for cls in (LocalStorage, S3Storage)}

__all__ = ["BACKENDS", "Storage", "StorageUnavailableError", "StoredObject", "get_storage"]


def get_storage(root: str | None = None, conn_id: str | None = None) -> Storage:
    """Return the store for ``root`` (default: MRI_STORAGE_ROOT and MRI_STORAGE_CONN_ID).

    :param root: a folder path or ``s3://bucket/prefix``.
    :param conn_id: the Airflow connection for a remote root.
    """
    from include.config import settings

    if root is None:
        root, conn_id = settings().storage_root, settings().storage_conn_id
    scheme = root.split("://", 1)[0] if "://" in root else ""
    backend = BACKENDS.get(scheme)
    if backend is None:
        raise ValueError(
            f"Unsupported scheme {scheme!r} in MRI_STORAGE_ROOT {root!r}; use a folder path or s3://bucket/prefix."
        )
    if scheme and not conn_id:
        raise ValueError(f"MRI_STORAGE_ROOT {root!r} needs MRI_STORAGE_CONN_ID: an Airflow `aws` connection.")
    return backend(root, conn_id)

"""The interface every image store implements: list, read, copy without overwriting, delete one key.

Keys are relative to the storage root (``landing/train/glioma (1).jpg``) so the same key means the
same thing on a local folder and in a bucket. Nothing here deletes by prefix.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from airflow.sensors.base import BaseSensorOperator

# Names an uploader is still writing (write to a temp name, then rename) are not listed.
IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".crdownload")


class StorageUnavailableError(RuntimeError):
    """The storage behind MRI_STORAGE_ROOT cannot be reached; the message says why and what to do."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


def is_listable(key: str) -> bool:
    """Hidden files and in-progress uploads wait in landing until they are complete."""
    name = key.rsplit("/", 1)[-1]
    return bool(name) and not name.startswith(".") and not name.endswith(IN_PROGRESS_SUFFIXES)


class Storage(ABC):
    """A place holding the images, addressed by keys relative to ``root``.

    :param root: a folder path, or ``s3://bucket/prefix``.
    :param conn_id: the Airflow connection for remote storage; None for a local folder.
    """

    # URI scheme of the roots this backend serves ("" for a plain path).
    scheme: ClassVar[str]

    def __init__(self, root: str, conn_id: str | None = None):
        self.root = root.rstrip("/")
        self.conn_id = conn_id

    def uri(self, key: str) -> str:
        """The full address of ``key``, as stored in the registry."""
        return f"{self.root}/{key}"

    def key(self, uri: str) -> str:
        """The key of a full address inside this store (inverse of :meth:`uri`)."""
        if not uri.startswith(self.root + "/"):
            raise ValueError(f"{uri!r} is not inside the storage root {self.root!r} (MRI_STORAGE_ROOT)")
        return uri[len(self.root) + 1 :]

    @abstractmethod
    def list(self, prefix: str) -> list[StoredObject]:
        """Every complete file below ``prefix`` (recursively), sorted by key."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def read(self, key: str, length: int | None = None) -> bytes:
        """The file's bytes, or only its first ``length`` bytes."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Create or replace ``key`` (used for logs and reports, never for images)."""

    @abstractmethod
    def copy_new(self, source: str, destination: str) -> bool:
        """Copy ``source`` to ``destination`` unless ``destination`` exists; True if copied."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete exactly one key."""

    @abstractmethod
    def landing_sensor(self, task_id: str, prefix: str, poke_interval: float) -> BaseSensorOperator:
        """A deferrable sensor that fires when a file is below ``prefix``; it waits on the triggerer."""

"""The interface every image store implements: list, read, copy without overwriting, delete one key.

Keys are relative to the storage root (``landing/train/glioma (1).jpg``) so the same key means the
same thing on a local folder and in a bucket. Nothing here deletes by prefix.

Two private folders may sit beside files in landing, and the listing reads them by name alone (so
the sensors see exactly what the listing sees, on every store):

- ``<folder>/.moving/<name>``: a file the mover claimed (renamed away from its upload name, so a new
  upload under that name cannot be deleted by mistake). It is listed as ``<folder>/<name>`` until
  it is moved, so a mover that crashed after claiming never strands it.
- ``<folder>/.parked/<name>``: a marker holding why ``<folder>/<name>`` failed every attempt and
  could not even be quarantined; that file is not listed (and wakes no sensor) until a person
  deletes the marker.
"""

from __future__ import annotations

import json
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from include.wiring.compat import BaseSensorOperator

# Names an uploader is still writing (write to a temp name, then rename) are not listed.
IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".crdownload")
MOVING, PARKED = ".moving", ".parked"

# What a directory entry is, for the quarantine reason of anything that is not a regular file.
FILE_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
}
REGULAR = "file"


class StorageUnavailableError(RuntimeError):
    """The storage behind MRI_STORAGE_ROOT cannot be reached; the message says why and what to do."""


class UnsafePathError(ValueError):
    """A key that would reach outside the storage root, or through an entry the pipeline did not
    make (a link where the mover keeps its private folder). Refused, never followed.

    :param key: the offending key (the link itself where there is one).
    """

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


class TooLargeError(Exception):
    """A file larger than the caller will read, refused by the size its store gives, before a byte of
    it is read. The message is the quarantine reason.

    :param size: the file's size in bytes, as the store lists it.
    :param max_bytes: the cap it is over (MRI_MAX_UPLOAD_BYTES).
    """

    def __init__(self, size: int, max_bytes: int):
        super().__init__(f"too large: {size} bytes, MRI_MAX_UPLOAD_BYTES is {max_bytes}; not read")
        self.size = size


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


@dataclass(frozen=True)
class Claim:
    """A landing file the mover has taken: where its bytes are now, what it is, and its version.

    :param key: the key holding the bytes (a private ``.moving/`` name locally, the key itself on S3).
    :param kind: ``file`` for a regular file, else what it is (``a named pipe (FIFO)``...).
    :param tag: the version the mover saw (the S3 ETag); copy and delete act only on that version.
    """

    key: str
    kind: str = REGULAR
    tag: str | None = None


def kind_of(mode: int) -> str:
    """``file`` for a regular file, else a readable name of what it is (from ``lstat``'s mode)."""
    return REGULAR if stat.S_ISREG(mode) else FILE_KINDS.get(stat.S_IFMT(mode), "not a file")


def is_listable(key: str) -> bool:
    """Hidden files, files in hidden folders (an uploader's staging area) and in-progress uploads
    wait in landing until they are complete."""
    parts = key.split("/")
    return bool(parts[-1]) and not any(p.startswith(".") for p in parts) and not key.endswith(IN_PROGRESS_SUFFIXES)


def private_key(key: str, area: str) -> str:
    """``landing/train/x.jpg`` -> ``landing/train/<area>/x.jpg`` (same folder: a rename stays on one disk)."""
    folder, _, name = key.rpartition("/")
    return f"{folder}/{area}/{name}" if folder else f"{area}/{name}"


def visible(objects: Iterable[StoredObject]) -> list[StoredObject]:
    """The files a listing shows, sorted by key: complete uploads and claimed files under their
    landing names, minus parked ones. Decided by names alone, so every store and sensor agrees."""
    found: dict[str, StoredObject] = {}
    parked: set[str] = set()
    for obj in objects:
        folder, _, name = obj.key.rpartition("/")
        parent, _, area = folder.rpartition("/") if "/" in folder else ("", "", folder)
        public = f"{parent}/{name}" if parent else name
        if area == PARKED and name:
            parked.add(public)
        elif area == MOVING and name:
            found.setdefault(public, StoredObject(public, obj.size))
        elif is_listable(obj.key):
            found[obj.key] = obj
    return [found[key] for key in sorted(found.keys() - parked)]


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
    def read(self, key: str, length: int | None = None, max_bytes: int | None = None) -> bytes:
        """The file's bytes, or only its first ``length`` bytes.

        :param max_bytes: raise :class:`TooLargeError`, reading nothing, if the file is larger.
        """

    @abstractmethod
    def sha256(self, key: str) -> str:
        """The hex SHA-256 of the file's bytes, read a chunk at a time: memory stays flat whatever its size."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Create or replace ``key`` (used for logs and reports, never for images)."""

    def write_json(self, key: str, value: object) -> str:
        """Store ``value`` as JSON at ``key``; returns the key. ASCII-escaped, so a file name that is
        not UTF-8 (Python's surrogates) round-trips, and any JSON channel can carry the key."""
        self.write(key, json.dumps(value).encode())
        return key

    def read_json(self, key: str) -> Any:
        return json.loads(self.read(key))

    @abstractmethod
    def copy_new(self, source: str, destination: str, source_tag: str | None = None) -> bool:
        """Copy ``source`` to ``destination`` unless ``destination`` exists; True if copied.

        :param source_tag: copy only this version of ``source`` (a :class:`Claim`'s tag).
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete exactly one key."""

    @abstractmethod
    def claim(self, key: str) -> Claim | None:
        """Take ``key`` for moving so that a new upload under its name is never touched; None if
        it is gone (moved by an earlier try). A claim left by a crashed mover is taken over."""

    @abstractmethod
    def release(self, claim: Claim) -> bool:
        """Delete the claimed bytes once they are copied; never a newer upload under the same
        name. True if deleted, False if the key holds another version now (it stays)."""

    def unclaim(self, claim: Claim, key: str) -> None:  # noqa: B027 (nothing to undo where a claim renames nothing)
        """Give a claim back after a failure, so the file waits under its own name again."""

    def is_folder(self, key: str) -> bool:
        """True if ``key`` names a folder, not a file (listings of some stores return both)."""
        return key.endswith("/")

    def impostors(self, folder: str) -> list[tuple[str, str]]:
        """Entries an uploader put where the mover keeps its private folders (``<folder>/.moving``,
        ``.parked``) that are not folders (a link, a file), as (key, what it is); stores without
        folders have none."""
        return []

    def park(self, key: str, reason: str) -> str:
        """Stop listing ``key`` (it stays where it is) and keep ``reason`` beside it; returns the marker's key."""
        marker = private_key(key, PARKED)
        self.write(marker, reason.encode())
        return marker

    @abstractmethod
    def landing_sensor(self, task_id: str, prefix: str, poke_interval: float) -> BaseSensorOperator:
        """A deferrable sensor that fires when a file is below ``prefix``; it waits on the triggerer."""

"""A local folder: the default, no connection, no server."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from include.files import atomic_write, fsync_dir
from include.storage.base import (
    MOVING,
    PARKED,
    Claim,
    Storage,
    StoredObject,
    TooLargeError,
    UnsafePathError,
    kind_of,
    private_key,
    visible,
)


class LocalStorage(Storage):
    scheme = ""

    def __init__(self, root: str, conn_id: str | None = None):
        # Absolute, so the uris in the registry mean the same from any working directory.
        super().__init__(os.path.abspath(root), conn_id)
        # What every key must stay below once links are followed (the root itself may be a link).
        self._real_root = os.path.realpath(self.root)

    def _path(self, key: str) -> Path:
        """The path of ``key``, refused unless the folder holding it is inside the root once every
        link in it is followed. The key's own last component is not followed: a symlink uploaded
        into landing stays an entry to quarantine, never a way out."""
        path = os.path.normpath(os.path.join(self.root, key))
        if not path.startswith(self.root + os.sep):
            raise UnsafePathError(f"Key {key!r} points outside the storage root {self.root}", key)
        self._check_inside(key, os.path.dirname(path))
        return Path(path)

    def _check_inside(self, key: str, folder: str) -> None:
        real = os.path.realpath(folder)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise UnsafePathError(
                f"Key {key!r} resolves to {real}, outside the storage root {self.root}: a folder on the "
                "way is a link. Refused; remove the link.",
                key,
            )

    @contextlib.contextmanager
    def _private_folder(self, key: str) -> Iterator[int]:
        """An open descriptor of the mover's own folder holding ``key`` (``.moving``, ``.parked``),
        made if missing. Opened without following a link and used through the descriptor, so an
        uploader who swaps the folder for a link (to anywhere) gets nothing renamed, written or
        deleted through it."""
        folder_key = key.rpartition("/")[0]
        folder = self._path(folder_key)
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise UnsafePathError(
                f"{folder_key} is {kind_of(os.lstat(folder).st_mode)}, not a folder: the mover keeps its private "
                "files there and refuses to follow it. Quarantine or remove it.",
                folder_key,
            ) from None
        try:
            yield fd
        finally:
            os.close(fd)

    def list(self, prefix: str) -> list[StoredObject]:
        base = Path(self.root)
        top = self._path(prefix)
        self._check_inside(prefix, str(top))  # a linked prefix folder is refused, not walked
        found = []
        # os.walk does not descend into linked folders below the top either.
        for dirpath, _, filenames in os.walk(top):
            for name in filenames:
                path = Path(dirpath) / name
                # Symlinks and pipes are listed so ingestion can quarantine them; lstat follows nothing.
                found.append(StoredObject(path.relative_to(base).as_posix(), path.lstat().st_size))
        return visible(found)

    def exists(self, key: str) -> bool:
        return os.path.lexists(self._path(key))

    @contextlib.contextmanager
    def _open_file(self, key: str) -> Iterator[tuple[BinaryIO, int]]:
        """``key`` open for reading, and its size; anything but a regular file is refused unread."""
        # O_NOFOLLOW: a symlink in landing could point anywhere on the host; it is refused, not read.
        # O_NONBLOCK: opening a named pipe would otherwise wait forever for a writer.
        fd = os.open(self._path(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            # Of the open file: the checks and the read see the same one, whatever is renamed meanwhile.
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "a directory, not a file")
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, f"not a regular file: {kind_of(info.st_mode)}")
            yield f, info.st_size

    def read(self, key: str, length: int | None = None, max_bytes: int | None = None) -> bytes:
        with self._open_file(key) as (f, size):
            if max_bytes is not None and size > max_bytes:
                raise TooLargeError(size, max_bytes)
            return f.read() if length is None else f.read(length)

    def sha256(self, key: str) -> str:
        with self._open_file(key) as (f, _):
            return hashlib.file_digest(f, "sha256").hexdigest()

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)

    def copy_new(self, source: str, destination: str, source_tag: str | None = None) -> bool:
        # source_tag is not needed here: a claimed local file is private to its mover.
        target = self._path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            # A hard link is an atomic create-if-absent: two movers can never overwrite each other.
            os.link(self._path(source), target, follow_symlinks=False)
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno != errno.EXDEV:  # only "another filesystem" has a fallback; the rest is a real error
                raise
            return self._copy_across_filesystems(self._path(source), target)
        return True

    @staticmethod
    def _copy_across_filesystems(source: Path, target: Path) -> bool:
        # A temp name of this mover's own (never one another mover could be writing), made durable
        # before it is linked into place: the caller deletes the source right after.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:200]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(os.open(source, os.O_RDONLY | os.O_NOFOLLOW), "rb") as src:
                shutil.copyfileobj(src, out)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            fsync_dir(target.parent)  # the new name survives a power cut too
            return True
        finally:
            os.unlink(tmp)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def claim(self, key: str) -> Claim | None:
        claimed = private_key(key, MOVING)
        name = claimed.rpartition("/")[2]
        with self._private_folder(claimed) as folder:
            # One mover per landing folder (max_active_runs=1, disjoint batches), so checking first
            # cannot race another claim; a claim left by a crashed try is taken over as it is.
            try:
                mode = os.lstat(name, dir_fd=folder).st_mode
            except FileNotFoundError:
                try:
                    # A rename moves the name atomically: an upload renamed to `key` after this
                    # instant is a new file the mover never touches.
                    os.rename(self._path(key), name, dst_dir_fd=folder)
                except FileNotFoundError:
                    return None
                mode = os.lstat(name, dir_fd=folder).st_mode
        return Claim(claimed, kind_of(mode))

    def release(self, claim: Claim) -> bool:
        name = claim.key.rpartition("/")[2]
        with self._private_folder(claim.key) as folder:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=folder)
        with contextlib.suppress(OSError):  # the private folder goes when its last claim does
            os.rmdir(self._path(claim.key).parent)
        return True

    def unclaim(self, claim: Claim, key: str) -> None:
        if os.path.lexists(self._path(key)):  # a new upload took the name; the claim is listed anyway
            return
        with self._private_folder(claim.key) as folder:
            os.rename(claim.key.rpartition("/")[2], self._path(key), src_dir_fd=folder)

    def park(self, key: str, reason: str) -> str:
        marker = private_key(key, PARKED)
        with self._private_folder(marker) as folder:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
            with open(os.open(marker.rpartition("/")[2], flags, 0o644, dir_fd=folder), "wb") as out:
                out.write(reason.encode())
        return marker

    def impostors(self, folder: str) -> list[tuple[str, str]]:
        found = []
        for area in (MOVING, PARKED):
            key = f"{folder}/{area}"
            with contextlib.suppress(FileNotFoundError):
                mode = os.lstat(self._path(key)).st_mode
                if not stat.S_ISDIR(mode):
                    found.append((key, kind_of(mode)))
        return found

    def is_folder(self, key: str) -> bool:
        path = self._path(key)
        return path.is_dir() and not path.is_symlink()

    def landing_sensor(self, task_id: str, prefix: str, poke_interval: float):
        from include.storage.local_sensor import LandingFolderSensor

        return LandingFolderSensor(task_id=task_id, folder=str(self._path(prefix)), poke_interval=poke_interval)

"""A local folder: the default, no connection, no server."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from include.storage.base import MOVING, Claim, Storage, StoredObject, kind_of, private_key, visible


class LocalStorage(Storage):
    scheme = ""

    def __init__(self, root: str, conn_id: str | None = None):
        # Absolute, so the uris in the registry mean the same from any working directory.
        super().__init__(os.path.abspath(root), conn_id)

    def _path(self, key: str) -> Path:
        # Normalised without following links: a symlink key stays a key inside the root.
        root = os.path.abspath(self.root)
        path = os.path.normpath(os.path.join(root, key))
        if not path.startswith(root + os.sep):
            raise ValueError(f"Key {key!r} points outside the storage root {self.root}")
        return Path(path)

    def list(self, prefix: str) -> list[StoredObject]:
        base = Path(self.root)
        found = []
        for dirpath, _, filenames in os.walk(base / prefix):
            for name in filenames:
                path = Path(dirpath) / name
                # Symlinks and pipes are listed so ingestion can quarantine them; lstat follows nothing.
                found.append(StoredObject(path.relative_to(base).as_posix(), path.lstat().st_size))
        return visible(found)

    def exists(self, key: str) -> bool:
        return os.path.lexists(self._path(key))

    def read(self, key: str, length: int | None = None) -> bytes:
        # O_NOFOLLOW: a symlink in landing could point anywhere on the host; it is refused, not read.
        # O_NONBLOCK: opening a named pipe would otherwise wait forever for a writer.
        fd = os.open(self._path(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "a directory, not a file")
            if not stat.S_ISREG(mode):
                raise OSError(errno.EINVAL, f"not a regular file: {kind_of(mode)}")
            return f.read() if length is None else f.read(length)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(data)
        os.replace(tmp.name, path)

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
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            directory = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the new name survives a power cut too
            finally:
                os.close(directory)
            return True
        finally:
            os.unlink(tmp)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def claim(self, key: str) -> Claim | None:
        claimed = private_key(key, MOVING)
        path = self._path(claimed)
        # One mover per landing folder (max_active_runs=1, disjoint batches), so checking first
        # cannot race another claim; a claim left by a crashed try is taken over as it is.
        if not os.path.lexists(path):
            path.parent.mkdir(exist_ok=True)
            try:
                # A rename moves the name atomically: an upload renamed to `key` after this
                # instant is a new file the mover never touches.
                os.rename(self._path(key), path)
            except FileNotFoundError:
                return None
        return Claim(claimed, kind_of(os.lstat(path).st_mode))

    def release(self, claim: Claim) -> bool:
        path = self._path(claim.key)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the private folder goes when its last claim does
            path.parent.rmdir()
        return True

    def unclaim(self, claim: Claim, key: str) -> None:
        if not os.path.lexists(self._path(key)):  # else a new upload took the name; the claim is listed anyway
            os.rename(self._path(claim.key), self._path(key))

    def is_folder(self, key: str) -> bool:
        path = self._path(key)
        return path.is_dir() and not path.is_symlink()

    def landing_sensor(self, task_id: str, prefix: str, poke_interval: float):
        from include.storage.local_sensor import LandingFolderSensor

        return LandingFolderSensor(task_id=task_id, folder=str(self._path(prefix)), poke_interval=poke_interval)

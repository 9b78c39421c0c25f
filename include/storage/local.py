"""A local folder: the default, no connection, no server."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from include.storage.base import Storage, StoredObject, is_listable


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
                key = path.relative_to(base).as_posix()
                # Symlinks are listed so ingestion can quarantine them; lstat does not follow them.
                if is_listable(key):
                    found.append(StoredObject(key, path.lstat().st_size))
        return sorted(found, key=lambda o: o.key)

    def exists(self, key: str) -> bool:
        return os.path.lexists(self._path(key))

    def read(self, key: str, length: int | None = None) -> bytes:
        # O_NOFOLLOW: a symlink in landing could point anywhere on the host; it is refused, not read.
        fd = os.open(self._path(key), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            return f.read() if length is None else f.read(length)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(data)
        os.replace(tmp.name, path)

    def copy_new(self, source: str, destination: str) -> bool:
        target = self._path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            # A hard link is an atomic create-if-absent: two movers can never overwrite each other.
            os.link(self._path(source), target, follow_symlinks=False)
        except FileExistsError:
            return False
        except OSError:  # another filesystem: copy to a temp name, then link it into place
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(self._path(source), tmp, follow_symlinks=False)
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            finally:
                tmp.unlink()
        return True

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def landing_sensor(self, task_id: str, prefix: str, poke_interval: float):
        from include.storage.local_sensor import LandingFolderSensor

        return LandingFolderSensor(task_id=task_id, folder=str(self._path(prefix)), poke_interval=poke_interval)

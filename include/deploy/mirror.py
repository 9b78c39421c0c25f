"""The optional second publish target (MRI_PUBLISH_TARGET ``storage:<prefix>``): each release copied
into the storage layer after the registry committed."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class MirrorError(RuntimeError):
    """The promotion committed and ``current`` serves the new release, but copying it to the
    publish target failed: production DID change. The message says how to retry the copy."""

    def __init__(self, model_id: str, release: str, target: str, cause: BaseException):
        super().__init__(
            f"promoted {model_id} (release {release}); mirroring to {target} failed: {cause}. Production is "
            f"{model_id}; clear the deploy_best_model run's promote task to copy it again (a retry of a run "
            "that promoted only mirrors), or fix MRI_PUBLISH_TARGET / MRI_STORAGE_CONN_ID."
        )
        self.model_id, self.release, self.target = model_id, release, target


class StorageMirror:
    """Publish target ``storage:<prefix>``: copy each release into the storage layer (MRI_STORAGE_ROOT).

    Files go to ``<prefix>/releases/<release>/``, then the one-line object ``<prefix>/CURRENT``
    names the release. A single PUT is atomic on S3, and a release's keys are all written before
    the pointer names it, so a reader that follows ``CURRENT`` never sees half a bundle. It runs
    after the registry committed, and is idempotent: a retry writes the same keys again.

    :param prefix: key prefix inside the storage root, e.g. ``production``.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix.strip("/")

    def publish(self, release_dir: Path) -> str:
        from include.storage import get_storage

        storage = get_storage()
        base = f"{self.prefix}/releases/{release_dir.name}"
        for path in sorted(p for p in release_dir.rglob("*") if p.is_file()):
            storage.write(f"{base}/{path.relative_to(release_dir).as_posix()}", path.read_bytes())
        storage.write(f"{self.prefix}/CURRENT", f"{release_dir.name}\n".encode())
        log.info("Mirrored release %s to %s", release_dir.name, storage.uri(base))
        return storage.uri(base)


def publisher(target: str) -> StorageMirror | None:
    """The mirror for MRI_PUBLISH_TARGET (``none`` or ``storage:<prefix>``, validated by the config)."""
    return None if target == "none" else StorageMirror(target.removeprefix("storage:"))

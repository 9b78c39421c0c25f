"""The served bundle on a local file system: releases written whole, served through one symlink.

A release is assembled in a hidden staging folder, renamed into ``releases/`` (a new name, so one
``rename(2)``), and served by replacing the ``current`` symlink with ``os.replace`` (also one
``rename(2)``). A reader that resolves ``current`` gets the old release or the new one, whole. A
directory cannot be renamed over a non-empty directory, hence the symlink; the previous release
is kept, so a reader that opened it mid-switch finishes reading, and a rollback has something to
point at.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from include.deploy.decision import PromotionError
from include.files import fsync_dir
from include.ml.bundle import DEPLOYMENT_FILE
from include.names import safe_name


class LocalBundles:
    """The served bundle on a local file system: ``<root>/releases/<release>/`` and ``<root>/current``.

    ``current`` is a relative symlink to ``releases/<release>``, so the folder can be moved or
    mounted elsewhere as a whole.

    :param root: MRI_PRODUCTION_DIR.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.releases = self.root / "releases"
        self.current = self.root / "current"

    def current_release(self) -> str | None:
        if not self.current.is_symlink():
            if self.current.exists():
                raise PromotionError(
                    f"{self.current} is not the symlink promotion manages (a folder or file put there by hand); "
                    "move it away, then run deploy_best_model again."
                )
            return None
        return Path(os.readlink(self.current)).name

    def release_dir(self, release: str) -> Path:
        return self.releases / release

    def new_staging(self) -> Path:
        """A hidden folder next to the releases (same file system, so the final rename is atomic)."""
        self.releases.mkdir(parents=True, exist_ok=True)
        return self.releases / f".staging-{uuid.uuid4().hex}"

    def finish(self, staging: Path, release: str) -> Path:
        """Make a fully written staging folder a release, in one rename (durable before it is visible)."""
        # Readable by the serving and training users (save_model's temp folders are private, 0700).
        staging.chmod(0o755)
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        target = self.release_dir(release)
        os.rename(staging, target)
        fsync_dir(self.releases)
        return target

    def switch(self, release: str | None) -> None:
        """Serve ``release`` (None: serve nothing) by replacing the symlink in one rename."""
        if release is None:
            if self.current.is_symlink():
                self.current.unlink()
            return
        if not self.release_dir(release).is_dir():
            raise PromotionError(f"Release {release!r} is not in {self.releases}; cannot serve it.")
        temporary = self.root / f".current-{uuid.uuid4().hex}"
        os.symlink(Path("releases") / release, temporary)
        os.replace(temporary, self.current)
        fsync_dir(self.root)

    def deployment(self, release: str | None = None) -> dict | None:
        """The deployment record of ``release`` (default: the served one), or None."""
        release = release or self.current_release()
        path = self.release_dir(release) / DEPLOYMENT_FILE if release else None
        return json.loads(path.read_text()) if path and path.is_file() else None

    def prune(self, keep: int = 3) -> None:
        """Delete staging leftovers and all but the newest ``keep`` releases; never the served one."""
        if not self.releases.is_dir():
            return
        served = self.current_release()
        for leftover in self.releases.glob(".staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for stale in self.root.glob(".current-*"):
            stale.unlink(missing_ok=True)
        releases = sorted(
            (p for p in self.releases.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: (self.deployment(p.name) or {}).get("promoted_at", ""),
            reverse=True,
        )
        for old in releases[keep:]:
            if old.name != served:
                shutil.rmtree(old, ignore_errors=True)


def release_name(model_id: str) -> str:
    """A new folder name per promotion: the model id made file-system safe, and the UTC time."""
    safe = safe_name(model_id).strip(".") or "model"
    return f"{safe}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"

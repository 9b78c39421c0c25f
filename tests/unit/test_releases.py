"""The served bundle's folder (include/deploy/releases.py): what pruning keeps and what it removes."""

import json

from include.deploy.releases import LocalBundles
from include.ml.bundle import DEPLOYMENT_FILE


def a_release(bundles: LocalBundles, name: str, promoted_at: str) -> None:
    """A release folder with only its deployment record: all that pruning reads."""
    folder = bundles.release_dir(name)
    folder.mkdir(parents=True)
    (folder / DEPLOYMENT_FILE).write_text(json.dumps({"model_id": f"m-{name}", "promoted_at": promoted_at}))


def test_prune_keeps_the_newest_releases_and_the_served_one_and_removes_leftovers(tmp_path):
    bundles = LocalBundles(tmp_path)
    for day, name in enumerate(["r-old", "r-2", "r-3", "r-4", "r-new"], start=1):
        a_release(bundles, name, f"2026-01-0{day}T00:00:00+00:00")
    bundles.switch("r-old")  # rolled back to the oldest: pruning must not take it
    bundles.new_staging().mkdir()  # a promotion that crashed while staging
    (tmp_path / ".current-leftover").symlink_to("releases/r-2")  # a switch that crashed before its rename

    bundles.prune(keep=3)

    assert sorted(p.name for p in bundles.releases.iterdir()) == ["r-3", "r-4", "r-new", "r-old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "releases"]
    assert bundles.current_release() == "r-old"

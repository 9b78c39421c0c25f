"""A deferrable sensor for a local landing folder that sees files exactly as the listing does.

Airflow's FileSensor/FileTrigger fire on any file, including an upload still being written under
a temporary name; the run would then list nothing, end, and the next one would fire again at
once. This pair applies ``visible``, the filter the ingestion listing uses.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from include.storage.base import StoredObject, visible
from include.wiring.compat import BaseSensorOperator, BaseTrigger, TriggerEvent


def has_complete_file(folder: str) -> bool:
    """True if the listing of ``folder`` would show a file (``visible``: the listing's own rule,
    so claimed files count and parked ones do not)."""
    found = [
        StoredObject(os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/"), 0)
        for dirpath, _, filenames in os.walk(folder)
        for name in filenames
    ]
    return bool(visible(found))


class LandingFolderTrigger(BaseTrigger):
    """Runs on the triggerer: checks ``folder`` every ``poke_interval`` seconds.

    :param folder: absolute path of the landing folder.
    :param poke_interval: seconds between checks.
    """

    def __init__(self, folder: str, poke_interval: float):
        super().__init__()
        self.folder = folder
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.LandingFolderTrigger", {"folder": self.folder, "poke_interval": self.poke_interval}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while not has_complete_file(self.folder):
            await asyncio.sleep(self.poke_interval)
        yield TriggerEvent({"folder": self.folder})


class LandingFolderSensor(BaseSensorOperator):
    """Succeeds when a complete file is below ``folder``; waits deferred, on the triggerer.

    :param folder: absolute path of the landing folder (templated).
    """

    template_fields = ("folder",)

    def __init__(self, *, folder: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.folder = folder

    def poke(self, context: Any) -> bool:
        return has_complete_file(self.folder)

    def execute(self, context: Any) -> None:
        if not self.poke(context):
            self.defer(
                trigger=LandingFolderTrigger(self.folder, self.poke_interval),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        self.log.info("Complete files are waiting in %s", self.folder)

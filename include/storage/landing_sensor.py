"""A deferrable sensor for any store's landing prefix that fires on exactly what the listing shows.

Airflow's S3KeySensor fires on any key under the prefix: an upload still named ``*.part``, a
``.DS_Store``, the zero-byte ``landing/train/`` folder marker. The run then lists nothing, ends,
and ``@continuous`` starts the next one at once. This pair asks the store's own ``list`` (hidden,
in-progress and parked files filtered by ``visible``), so the two can never disagree.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from include.wiring.compat import BaseSensorOperator, BaseTrigger, TriggerEvent


def has_waiting_file(root: str, conn_id: str | None, prefix: str) -> bool:
    """True if the listing of ``prefix`` in the store at ``root`` shows at least one file."""
    from include.storage import get_storage

    return bool(get_storage(root, conn_id).list(prefix))


class LandingTrigger(BaseTrigger):
    """Runs on the triggerer: lists ``prefix`` every ``poke_interval`` seconds, in a thread (the
    store's client is blocking; the triggerer's event loop must not be).

    :param root: the store's root (``s3://bucket/prefix`` or a folder).
    :param conn_id: the store's Airflow connection, None for a folder.
    :param prefix: the landing prefix, relative to ``root``.
    :param poke_interval: seconds between checks.
    """

    def __init__(self, root: str, conn_id: str | None, prefix: str, poke_interval: float):
        super().__init__()
        self.root, self.conn_id, self.prefix, self.poke_interval = root, conn_id, prefix, poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.LandingTrigger", {
            "root": self.root,
            "conn_id": self.conn_id,
            "prefix": self.prefix,
            "poke_interval": self.poke_interval,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while not await asyncio.to_thread(has_waiting_file, self.root, self.conn_id, self.prefix):
            await asyncio.sleep(self.poke_interval)
        yield TriggerEvent({"root": self.root, "prefix": self.prefix})


class LandingSensor(BaseSensorOperator):
    """Succeeds when the listing of ``prefix`` shows a file; waits deferred, on the triggerer.

    :param root: the store's root (templated).
    :param conn_id: the store's Airflow connection, None for a folder.
    :param prefix: the landing prefix, relative to ``root`` (templated).
    """

    template_fields = ("root", "prefix")

    def __init__(self, *, root: str, conn_id: str | None, prefix: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.root, self.conn_id, self.prefix = root, conn_id, prefix

    def poke(self, context: Any) -> bool:
        return has_waiting_file(self.root, self.conn_id, self.prefix)

    def execute(self, context: Any) -> None:
        # The first check runs here, on a worker: a store that cannot be reached fails the task
        # with the store's own message, instead of looping silently on the triggerer.
        if not self.poke(context):
            self.defer(
                trigger=LandingTrigger(self.root, self.conn_id, self.prefix, self.poke_interval),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        self.log.info("Complete files are waiting in %s/%s", self.root, self.prefix)

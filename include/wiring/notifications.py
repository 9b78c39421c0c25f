"""Notifications on success and failure: Slack when a connection is configured, always a log line
and a JSON file.

The JSON file is written first, so a Slack outage never loses the record of what happened. Use
:func:`notify_on` to attach both callbacks to a task (task-level callbacks run in the task's own
process, with its context: the exception on failure, the XComs on success).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pendulum

from include.config import settings
from include.files import atomic_write
from include.names import safe_name
from include.wiring.compat import BaseNotifier

log = logging.getLogger(__name__)


class PipelineNotifier(BaseNotifier):
    """Tell people what a task did.

    :param event: ``success`` or ``failure`` (names the file and the log line).
    :param message: what to say (templated: Jinja over the task's context, e.g. XComs).
    """

    template_fields = ("message",)

    def __init__(self, event: str, message: str):
        super().__init__()
        self.event = event
        self.message = message

    def __call__(self, *args: Any) -> None:
        # Rendering writes the message in place: every mapped task instance shares this notifier,
        # so each renders its own copy (else the first rendering is repeated for all of them).
        BaseNotifier.__call__(copy.copy(self), *args)

    def notify(self, context: Any) -> None:
        ti = context["ti"]
        record = {
            "event": self.event,
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "task_id": ti.task_id,
            "map_index": ti.map_index,
            "try_number": ti.try_number,
            "message": self.message,
            "exception": str(context["exception"]) if context.get("exception") else None,
            "at": pendulum.now("UTC").isoformat(),
        }
        path = write_record(Path(settings().notifications_dir), record)
        level = logging.ERROR if self.event == "failure" else logging.INFO
        log.log(level, "NOTIFY %s %s.%s: %s (%s)", self.event, ti.dag_id, ti.task_id, self.message, path)
        if settings().slack_conn_id:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

            text = (
                f"{':x:' if self.event == 'failure' else ':white_check_mark:'} {ti.dag_id}.{ti.task_id}: {self.message}"
            )
            SlackWebhookNotifier(slack_webhook_conn_id=settings().slack_conn_id, text=text).notify(context)


def write_record(folder: Path, record: dict) -> Path:
    """Write ``record`` as ``<dag_id>/<run_id>.<task_id>.<event>.json`` (temp file, then rename)."""
    target_dir = folder / safe_name(record["dag_id"])
    target_dir.mkdir(parents=True, exist_ok=True)
    name = ".".join(safe_name(str(record[k])) for k in ("run_id", "task_id", "map_index", "event"))
    target = target_dir / f"{name}.json"
    atomic_write(target, json.dumps(record, indent=2))
    return target


def notify_on(success: str, failure: str) -> dict[str, PipelineNotifier]:
    """Task keyword arguments that notify on success and on failure (messages are templated)."""
    return {
        "on_success_callback": PipelineNotifier("success", success),
        "on_failure_callback": PipelineNotifier("failure", failure),
    }

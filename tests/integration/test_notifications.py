"""Notifications through the real callbacks of a `dag.test()` run: a JSON file always, Slack's
webhook protocol (a local HTTP endpoint standing in for hooks.slack.com) when a connection is set."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pendulum
import pytest

from include.config import settings
from include.wiring.compat import dag, task
from include.wiring.notifications import notify_on
from tests.support.metadata import register


def one_task_dag(fail: bool):
    @dag(dag_id=f"notify_{'fail' if fail else 'ok'}", schedule=None, start_date=pendulum.datetime(2024, 1, 1))
    def notify():
        @task(retries=0, **notify_on(success="scored {{ ti.xcom_pull() }}", failure="training failed"))
        def work() -> float:
            if fail:
                raise ValueError("loss is NaN")
            return 0.97

        work()

    return notify()


@pytest.fixture
def notifications(tmp_path, monkeypatch):
    monkeypatch.setenv("MRI_NOTIFICATIONS_DIR", str(tmp_path / "notifications"))
    settings.cache_clear()
    yield tmp_path / "notifications"
    settings.cache_clear()


def test_a_failed_task_writes_a_json_notification_with_the_error(notifications):
    register(one_task_dag(fail=True)).test()

    (written,) = (notifications / "notify_fail").glob("*.json")
    record = json.loads(written.read_text())
    assert (record["event"], record["task_id"], record["message"]) == ("failure", "work", "training failed")
    assert record["exception"] == "loss is NaN"


def test_success_is_posted_to_the_slack_webhook_with_the_rendered_message(notifications, monkeypatch):
    received: list[dict] = []

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/services/T0/B0/X0"
    monkeypatch.setenv("AIRFLOW_CONN_TEST_SLACK", json.dumps({"conn_type": "slackwebhook", "password": url}))
    monkeypatch.setenv("MRI_SLACK_CONN_ID", "test_slack")
    settings.cache_clear()
    try:
        register(one_task_dag(fail=False)).test()
    finally:
        server.shutdown()

    assert len(received) == 1 and "notify_ok.work: scored 0.97" in received[0]["text"]
    (written,) = (notifications / "notify_ok").glob("*.json")
    assert json.loads(written.read_text())["message"] == "scored 0.97"


def test_each_mapped_task_instance_notifies_its_own_rendered_message(notifications):
    @dag(dag_id="notify_mapped", schedule=None, start_date=pendulum.datetime(2024, 1, 1))
    def notify_mapped():
        @task(retries=0, **notify_on(success="trained {{ ti.xcom_pull(map_indexes=ti.map_index) }}", failure="-"))
        def train(learning_rate: float) -> str:
            return f"lr={learning_rate}"

        train.expand(learning_rate=[0.1, 0.2])

    register(notify_mapped()).test()

    messages = sorted(json.loads(p.read_text())["message"] for p in (notifications / "notify_mapped").glob("*.json"))
    assert messages == ["trained lr=0.1", "trained lr=0.2"]

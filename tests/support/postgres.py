"""A throwaway PostgreSQL 15 cluster: initdb in a temp dir, 127.0.0.1 on a free port, stopped after.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.
Used by the tests, the benchmarks and the Postgres demo profile.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    database: str
    data_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def airflow_conn(self) -> str:
        """The value of an AIRFLOW_CONN_<ID> variable for this server."""
        return f"postgres://{self.user}@{self.host}:{self.port}/{self.database}"

    def pg_ctl(self, *args: str) -> None:
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), *args])

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast", "-w")

    def start(self) -> None:
        self.pg_ctl("start", *self._server_args())

    def restart(self) -> None:
        """Stop (fast: open transactions are aborted) and start again on the same port."""
        self.pg_ctl("restart", "-m", "fast", *self._server_args())

    def _server_args(self) -> tuple[str, ...]:
        # -l: the server logs to a file, never to our pipes (which would never reach EOF).
        return (
            "-w",
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            f"-p {self.port} -c listen_addresses={self.host} -k {self.data_dir} -c max_connections=200 -c fsync=off",
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demote() -> None:
    """As root, become the postgres system user in the child (initdb/postgres refuse root)."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, preexec_fn=_demote, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


@contextlib.contextmanager
def running_postgres(user: str = "mri", database: str = "mri") -> Iterator[PostgresServer]:
    """Start a fresh cluster for the duration of the block; always stopped and removed after."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"No PostgreSQL server binaries in {PG_BIN}; install postgresql-15 or set PG_BIN.")
    data_dir = Path(tempfile.mkdtemp(prefix="mri-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data_dir, SERVER_USER, SERVER_USER)
    server = PostgresServer("127.0.0.1", free_port(), user, database, data_dir)
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(data_dir), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"])
        server.start()
        _run([str(PG_BIN / "createdb"), "-h", server.host, "-p", str(server.port), "-U", user, database])
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

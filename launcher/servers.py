"""Throwaway local servers: PostgreSQL 15, Redis and moto's S3 API, each on 127.0.0.1 on a free port.

Each is a context manager that starts the server for the block and always stops it (and removes its
files) after. The tests, the benchmarks and ``make demo-scale`` (``launcher.scale_profile``) use them;
nothing here is needed when the services already run elsewhere (compose, Helm, a managed database).
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.

Any local user can reach 127.0.0.1, so PostgreSQL and Redis each get a new random password, and
the URLs the context managers yield carry it: without it PostgreSQL (whose superuser could run
shell commands through ``COPY ... PROGRAM``) and Redis (a Celery broker: whoever queues a message
runs a task) refuse the connection. The password reaches no command line (``ps`` shows those to
every user): PostgreSQL reads it from a file, Redis from its config file, both in a 0700 folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = Path(os.environ.get("REDIS_SERVER", "/usr/bin/redis-server"))
SERVER_USER = "postgres"
# What to run when a server binary is missing (Debian/Ubuntu package names).
INSTALL_HINT = "apt-get install postgresql-15 redis-server"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    data_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{quote(self.password, safe='')}@{self.host}:{self.port}/{self.database}"

    def airflow_conn(self) -> str:
        """The value of an AIRFLOW_CONN_<ID> variable for this server."""
        return self.url.replace("postgresql://", "postgres://", 1)

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


def new_password() -> str:
    # Hex: needs no quoting in a URL or a config file.
    return secrets.token_hex(24)


def without_password(url: str) -> str:
    """``url`` fit for a log: its password, if any, shown as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}").geturl()


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


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, preexec_fn=_demote, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _wait_for_port(port: int, process: subprocess.Popen, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start on 127.0.0.1:{port} (exit code {process.poll()})")
        time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_postgres(user: str = "mri", database: str = "mri") -> Iterator[PostgresServer]:
    """Start a fresh cluster for the duration of the block; always stopped and removed after."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"No PostgreSQL server binaries in {PG_BIN}; run `{INSTALL_HINT}` or set PG_BIN.")
    # 0700 (mkdtemp): holds the password file, then the data folder (initdb makes it 0700 too),
    # which holds the server's Unix socket.
    folder = Path(tempfile.mkdtemp(prefix="mri-pg-"))
    server = PostgresServer("127.0.0.1", free_port(), user, new_password(), database, folder / "data")
    password_file = folder / "password"
    password_file.write_text(server.password)
    if os.geteuid() == 0:
        for path in (folder, password_file):
            shutil.chown(path, SERVER_USER, SERVER_USER)
    try:
        # scram-sha-256 on the socket and on TCP alike: no connection without the password.
        initdb = [str(PG_BIN / "initdb"), "-D", str(server.data_dir), "-U", user, f"--pwfile={password_file}"]
        _run([*initdb, "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"])
        password_file.unlink()
        server.start()
        createdb = [str(PG_BIN / "createdb"), "-h", server.host, "-p", str(server.port), "-U", user, database]
        _run(createdb, env={**os.environ, "PGPASSWORD": server.password})
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """Start Debian's ``redis-server`` (no persistence) and yield its URL, password included;
    stopped and removed after."""
    if not REDIS_SERVER.exists():
        raise RuntimeError(f"No Redis server at {REDIS_SERVER}; run `{INSTALL_HINT}` or set REDIS_SERVER.")
    port, password = free_port(), new_password()
    work_dir = Path(tempfile.mkdtemp(prefix="mri-redis-"))  # 0700
    config = work_dir / "redis.conf"
    config.write_text(f"requirepass {password}\n")
    # A broker for one run: nothing is saved, so nothing is left behind and no fork is paid for snapshots.
    command = [str(REDIS_SERVER), str(config), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(work_dir)]
    command += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(work_dir / "redis.log")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, "redis-server")
        yield f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0"
    finally:
        _stop(process)
        shutil.rmtree(work_dir, ignore_errors=True)


@contextlib.contextmanager
def running_s3_server() -> Iterator[str]:
    """Start ``moto_server`` (the venv's) and yield its endpoint URL; the process is stopped after the block."""
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_port(port, process, "moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)

"""A real S3 API endpoint for tests: moto's standalone server in its own process on 127.0.0.1
(started by ``launcher.servers``), plus what a test puts in front of it: a TCP relay it can cut and
restore, to make the endpoint go away mid-run while the server (and the objects in it) survive; and
an HTTP relay that makes it an S3 API without conditional deletes."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from launcher.servers import free_port, running_s3_server

__all__ = ["Relay", "WithoutConditionalDeletes", "running_s3_server"]


class Relay:
    """Forwards 127.0.0.1:<port> to a target port; ``cut()`` drops every connection and refuses new ones."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()


# What an S3 API answers for a request header it does not implement.
NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code><Message>A header you provided '
    b"implies functionality that is not implemented</Message><Header>If-Match</Header></Error>"
)


class WithoutConditionalDeletes:
    """An S3 API without conditional deletes, as some S3 services are: every request goes on to the
    target endpoint, except a DELETE with ``If-Match``, answered 501 ``NotImplemented`` (counted in
    ``refused``). moto honours ``If-Match``, so this is how a test reaches the code for the others.

    :param target_port: the port of the S3 endpoint behind it, on 127.0.0.1.
    """

    def __init__(self, target_port: int):
        self.refused = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as boto expects

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "DELETE" and "If-Match" in self.headers:
                    relay.refused += 1
                    self.answer(501, [("Content-Type", "application/xml")], NOT_IMPLEMENTED, str(len(NOT_IMPLEMENTED)))
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
                try:
                    upstream.request(self.command, self.path, body, dict(self.headers))
                    response = upstream.getresponse()
                    data = response.read()
                    # The body goes on whole, never chunked; a HEAD keeps the length of what it describes.
                    length = response.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                    self.answer(response.status, response.getheaders(), data, length)
                finally:
                    upstream.close()

            def answer(self, status: int, headers: list[tuple[str, str]], data: bytes, length: str) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

            def log_message(self, *args) -> None:  # quiet: the test reads `refused`, not a log
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

"""A smart-HTTP git server on 127.0.0.1 for tests and benches: real git over real HTTP.

Each request runs ``git http-backend`` as a CGI program over the bare repositories under one
folder (every one exported, pushes allowed), after sleeping ``delay`` seconds: a stand-in for a
network round trip, so that a remote "across a network" can be played on one machine.

    with GitHTTP(root, delay=0.05) as server:
        url = server.url("rig.git")          # http://127.0.0.1:PORT/rig.git
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class GitHTTP:
    def __init__(self, root: Path, delay: float = 0.0):
        self.root = Path(root)
        self.delay = delay
        self.requests = 0  # served so far (a test can tell its git really went over HTTP)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repo}"

    def __enter__(self) -> GitHTTP:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def serve(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request through ``git http-backend``: (status, headers, body) of its answer."""
        with self._lock:
            self.requests += 1
        if self.delay:
            time.sleep(self.delay)
        url = urlsplit(path)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(self.root),
               "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": method, "PATH_INFO": url.path,
               "QUERY_STRING": url.query, "CONTENT_TYPE": headers.get("content-type", ""),
               "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1",
               "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.receivepack", "GIT_CONFIG_VALUE_0": "true",
               "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(self.root)}
        if "content-encoding" in headers:  # git sends big requests gzipped: http-backend inflates them
            env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
        if "git-protocol" in headers:  # protocol v2, as a client asks for it
            env["GIT_PROTOCOL"] = headers["git-protocol"]
        proc = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env, check=False,
                              timeout=60)  # a request never holds a test for ever
        head, _, out = proc.stdout.partition(b"\r\n\r\n")  # http-backend ends its CGI headers so
        if proc.returncode and not head:
            return 500, [("Content-Type", "text/plain")], proc.stderr
        status = 200
        answer = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                answer.append((name, value.strip()))
        return status, answer, out


def _handler(server: GitHTTP) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real git server speaks

        def do_GET(self) -> None:
            self._serve(b"")

        def do_POST(self) -> None:
            self._serve(self._body())

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline().strip():  # trailers
                    pass
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self, body: bytes) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer, out = server.serve(self.command, self.path, headers, body)
            self.send_response(status)
            for name, value in answer:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
            pass

    return Handler

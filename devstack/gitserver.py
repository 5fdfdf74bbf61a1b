"""A Git server over HTTP: ``git http-backend`` (smart HTTP, push enabled) behind a tiny CGI bridge.

Run as ``python -m devstack.gitserver --root DIR --port N``. Bare repos under DIR are served
at ``http://127.0.0.1:N/<name>.git``. Like a Git host, each repo can notify a webhook on push
(see ``devstack.gitnotify``), signed the way Gitea signs. The stack's forge is Gitea
(``devstack.gitea``); this server stays for tests and benchmarks that reach into bare repos on disk.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

GIT_TIMEOUT_SECONDS = 300


class GitHandler(BaseHTTPRequestHandler):
    root: Path
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._cgi()

    def do_POST(self) -> None:  # noqa: N802
        self._cgi()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write("gitserver: " + (format % args) + "\n")

    def _cgi(self) -> None:
        url = urlsplit(self.path)
        if ".." in url.path.split("/"):
            self.send_error(400, "bad path")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else self._read_chunked()
        env = {
            "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": url.path, "QUERY_STRING": url.query, "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "shipline", "REMOTE_ADDR": self.client_address[0],
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root),
        }
        git = shutil.which("git") or "git"
        done = subprocess.run([git, "http-backend"], input=body, capture_output=True, env=env,
                              timeout=GIT_TIMEOUT_SECONDS)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if done.stderr:
            sys.stderr.write(done.stderr.decode(errors="replace"))

    def _read_chunked(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return b""
        chunks = []
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()


def serve(root: Path, port: int) -> None:
    handler = type("BoundGitHandler", (GitHandler,), {"root": root})
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    serve(args.root.resolve(), args.port)


if __name__ == "__main__":
    main()

"""The node's relay: a server on the host's 127.0.0.1 answers at the same address and port inside
another network namespace, both ways, to the end of each stream."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.noderelay import inside
from devstack.process import Daemon, free_port, wait_until

pytestmark = pytest.mark.stack


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"shlrelay{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def read_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def echo_upper(port: int) -> socket.socket:
    """A host-loopback server that answers each connection with its whole input upper-cased."""
    server = socket.create_server(("127.0.0.1", port))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(read_all(conn).upper())

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_a_loopback_server_answers_inside_the_namespace(netns: str, tmp_path: Path) -> None:
    port = free_port()
    server = echo_upper(port)
    relay = Daemon("relay", tmp_path)
    relay.start([sys.executable, "-m", "devstack.noderelay", "--netns", netns, "--address", "127.0.0.1", str(port)],
                cwd=Path(__file__).parents[2])
    try:
        wait_until(lambda: "relaying" in relay.log_file.read_text(), timeout=15, what="relay", log=relay.log_file)
        payload = os.urandom(3_000_000).hex().encode()  # several chunks each way
        with inside(netns):
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
        with client:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)  # the server answers once it sees the end
            answer = read_all(client)
        assert answer == payload.upper()
    finally:
        relay.stop()
        server.close()

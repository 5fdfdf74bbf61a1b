"""The real node's way to the stack's servers: a TCP relay from the node's network namespace to the
host's loopback.

The node (containerd, its pods, kube-proxy, CoreDNS) lives in its own network namespace, so its
iptables rules never meet another stack's; but the stack's servers (apiserver, registry, git)
listen on the host's ``127.0.0.1`` only. This process listens *inside* the node's namespace, on
its loopback and on the pods' gateway address, on the same port numbers, and connects out from
the host's namespace to ``127.0.0.1:<port>``. So ``127.0.0.1:<registry port>`` means the same
registry to containerd, to a ``hostNetwork`` build pod and to the host, and a pod reaches the
apiserver at ``<gateway>:<port>`` (the ``kubernetes`` Service's endpoint).

Run as ``python -m devstack.noderelay --netns NAME --address A [--address B] PORT...``.
The listening sockets are made after ``setns`` into the node's namespace (they stay there), then
the process returns to the host's namespace before its event loop starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import socket
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
CHUNK = 65536


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """This thread in ``netns`` for the block (sockets created there stay there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / netns, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the host namespace")
    finally:
        os.close(home)
        os.close(target)


def listeners(netns: str, addresses: list[str], ports: list[int]) -> list[tuple[socket.socket, int]]:
    made = []
    with inside(netns):
        for port in ports:
            for address in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                sock.listen(128)
                sock.setblocking(False)
                made.append((sock, port))
    return made


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof() if writer.can_write_eof() else writer.close()


async def _relay(port: int, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))
    for writer in (client_writer, up_writer):
        writer.close()


async def serve(made: list[tuple[socket.socket, int]]) -> None:
    servers = []
    for sock, port in made:
        servers.append(await asyncio.start_server(lambda r, w, p=port: _relay(p, r, w), sock=sock))
    print(f"relaying {sorted({p for _, p in made})}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.noderelay")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--address", action="append", required=True)
    parser.add_argument("ports", nargs="+", type=int)
    args = parser.parse_args()
    asyncio.run(serve(listeners(args.netns, args.address, args.ports)))


if __name__ == "__main__":
    main()

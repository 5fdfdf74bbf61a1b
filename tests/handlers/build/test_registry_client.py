"""The registry client's TLS setup: the CA bundle is loaded once per process, not once per client."""

from __future__ import annotations

import contextlib
import os
import ssl
from pathlib import Path

import pytest

from devstack.stack import Stack
from handlers.build import registry
from handlers.build.errors import RegistryUnavailable
from handlers.build.registry import RegistryClient


def test_verifying_clients_share_one_context_and_load_the_ca_bundle_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[object] = []
    real = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        loads.append(kwargs.get("cafile") or kwargs.get("capath"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counting)
    registry.verified_tls.cache_clear()
    clients = [RegistryClient(f"registry{n}.example") for n in range(3)]
    try:
        assert len(loads) == 1, f"the CA bundle was loaded {len(loads)} times for 3 clients"
        assert registry.verified_tls().verify_mode == ssl.CERT_REQUIRED
        assert registry.verified_tls().check_hostname
    finally:
        for client in clients:
            client.close()
        registry.verified_tls.cache_clear()


def test_an_insecure_registry_loads_no_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: pytest.fail("loaded a CA bundle"))
    registry.verified_tls.cache_clear()
    RegistryClient("127.0.0.1:5000", insecure=True).close()


def test_pings_of_one_registry_share_one_kept_connection(stack: Stack) -> None:
    """A build's ping runs beside its fetch: a new connection per ping (TCP, then TLS on a real
    registry) took longer than the fetch."""
    seen = []
    for _ in range(3):
        registry.ping_kept(stack.registry.host, insecure=True)
        seen.append(established_to(stack.registry.port))
    assert len(seen[0]) == 1 and seen == [seen[0]] * 3, f"local ports after each ping: {seen}"


def test_a_failed_ping_is_tried_once_more_on_a_new_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry may have closed the kept connection meanwhile; a second failure is the answer."""
    used: list[RegistryClient] = []
    failures = iter([True, False, False, True, True])

    def ping(client: RegistryClient) -> None:
        used.append(client)
        if next(failures):
            raise RegistryUnavailable("closed")

    monkeypatch.setattr(RegistryClient, "ping", ping)
    registry.ping_kept("retry.example", insecure=True)
    assert len(used) == 2 and used[1] is not used[0], "a new client after the failure"
    registry.ping_kept("retry.example", insecure=True)
    assert used[2] is used[1], "the client that answered is kept"
    with pytest.raises(RegistryUnavailable):
        registry.ping_kept("retry.example", insecure=True)
    assert len(used) == 5 and used[4] is not used[3]


def established_to(port: int) -> list[int]:
    """The local ports of this process's established TCP connections to 127.0.0.1:``port``."""
    mine = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                mine.add(target[8:-1])
    ports = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if int(remote.split(":")[1], 16) == port and state == "01" and inode in mine:
            ports.append(int(local.split(":")[1], 16))
    return sorted(ports)

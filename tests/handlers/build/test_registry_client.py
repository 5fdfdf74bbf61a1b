"""The registry client's TLS setup: the CA bundle is loaded once per process, not once per client."""

from __future__ import annotations

import ssl

import pytest

from handlers.build import registry
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

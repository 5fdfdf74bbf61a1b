"""One image-reference parser: tag after the last ``:`` past the last ``/``, digest first, hosts."""

from __future__ import annotations

import pytest

from handlers.images import ImageRef, normalize_image, same_image, short_name, split_host

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(("ref", "parts"), [
    ("registry.local:5000/app/web:1.2.3", ("registry.local:5000/app/web", "1.2.3", None)),
    ("registry.local:5000/app/web", ("registry.local:5000/app/web", None, None)),
    ("nginx:1.25@" + DIGEST, ("nginx", "1.25", DIGEST)),
    ("ghcr.io/o/a@" + DIGEST, ("ghcr.io/o/a", None, DIGEST)),
    ("127.0.0.1:5000/shop/frontend:1.0.0@" + DIGEST, ("127.0.0.1:5000/shop/frontend", "1.0.0", DIGEST)),
])
def test_parse_and_format_round_trip(ref: str, parts: tuple[str, str | None, str | None]) -> None:
    parsed = ImageRef.parse(ref)
    assert (parsed.name, parsed.tag, parsed.digest) == parts
    assert ImageRef(*parts).format() == ref == str(parsed)


@pytest.mark.parametrize(("name", "host", "repository"), [
    ("nginx", "docker.io", "library/nginx"),
    ("acme/app", "docker.io", "acme/app"),
    ("localhost/app", "localhost", "app"),
    ("127.0.0.1:5000/shop/frontend", "127.0.0.1:5000", "shop/frontend"),
    ("ghcr.io/org/app", "ghcr.io", "org/app"),
])
def test_the_first_part_is_a_host_only_with_a_dot_a_colon_or_localhost(name: str, host: str,
                                                                         repository: str) -> None:
    ref = ImageRef.parse(name)
    assert (ref.host, ref.repository, ref.canonical) == (host, repository, f"{host}/{repository}")
    assert split_host(name)[1] == short_name(name)


def test_docker_hub_spellings_are_the_same_image() -> None:
    assert same_image("docker.io/library/nginx", "nginx")
    assert same_image("Index.Docker.io/library/nginx", "registry-1.docker.io/nginx")
    assert not same_image("ghcr.io/x/nginx", "nginx")
    assert normalize_image("docker.io/acme/app") == "acme/app"

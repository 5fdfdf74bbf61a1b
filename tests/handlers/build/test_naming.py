"""Image names split like docker does; clone URLs lose their credentials before becoming labels."""

from __future__ import annotations

import pytest

from handlers.build.registry import Credentials, registry_image
from handlers.build.run import public_url
from handlers.errors import UnsafeInput
from handlers.images import ImageRef


@pytest.mark.parametrize(("name", "host", "repository"), [
    ("127.0.0.1:5000/shop/frontend", "127.0.0.1:5000", "shop/frontend"),
    ("ghcr.io/org/app", "ghcr.io", "org/app"),
    ("localhost/app", "localhost", "app"),
    ("org/app", "docker.io", "org/app"),
    ("nginx", "docker.io", "library/nginx"),
])
def test_image_names_split_into_host_and_repository(name: str, host: str, repository: str) -> None:
    ref = ImageRef.parse(name)
    assert (ref.host, ref.repository) == (host, repository)


@pytest.mark.parametrize("name", ["ghcr.io/Org/App", "ghcr.io/org/app:tag", "ghcr.io/../x", ""])
def test_unsafe_image_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeInput):
        registry_image(name)


def test_credentials_hide_the_password() -> None:
    assert "s3cret" not in repr(Credentials("bot", "s3cret"))


@pytest.mark.parametrize(("url", "shown"), [
    ("https://bot:tok@git.example/org/app.git", "https://git.example/org/app.git"),
    ("https://git.example/org/app.git", "https://git.example/org/app.git"),
    ("git@git.example:org/app.git", "git@git.example:org/app.git"),
])
def test_source_label_never_carries_credentials(url: str, shown: str) -> None:
    assert public_url(url) == shown

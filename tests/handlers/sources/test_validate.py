"""Validators accept what senders really send and refuse what could reach a command line badly."""

from __future__ import annotations

import pytest

from handlers.errors import UnsafeInput
from handlers.validate import (
    validate_clone_url,
    validate_delivery_id,
    validate_digest,
    validate_git_repo,
    validate_ref,
    validate_registry_host,
    validate_relpath,
    validate_repository,
    validate_sha,
    validate_tag,
    validate_text,
)

SHA1 = "63738bb582c8b540af7bcfc18f87c575c3ed66e0"
SHA256 = "a" * 64
DIGEST = "sha256:" + "0123456789abcdef" * 4

CASES = [
    (validate_ref, ["refs/heads/main", "refs/tags/v1.0", "refs/heads/feature/wip", "refs/heads/a-b_c.d"],
     ["main", "refs/heads/../x", "refs/heads/-x", "refs/heads/a b", "refs/heads/a\x00", "refs/heads/a\n",
      "refs/heads/x.lock", "refs/heads/x/", "refs/heads/.hidden", "refs/heads/a@{1}", "refs/heads/a//b",
      "refs/heads/a~1", "refs/heads/a:b", "refs/heads/" + "x" * 300, ""]),
    (validate_sha, [SHA1, SHA256, "0" * 40],
     ["", SHA1[:39], SHA1.upper(), SHA1 + "0", "g" * 40, "a" * 63]),
    (validate_tag, ["latest", "1.6.1", "v1.0.0-rc.1", "_x", "a" * 128],
     ["", "-x", ".x", "a" * 129, "a:b", "a/b", "sha256:" + "a" * 64, "a b"]),
    (validate_digest, [DIGEST, ""],
     ["sha256:" + "a" * 60, "sha256:" + "A" * 64, "sha512:" + "a" * 64, "sha256:xxxx" + "a" * 60]),
    (validate_repository, ["library/test", "foo/bar", "hello-world", "a/b/c", "a__b", "a--b", "dingggu/x.y"],
     ["", "Foo/bar", "/foo", "foo/", "foo//bar", "-foo", "foo-", "foo/../bar", "a b", "a" * 256]),
    (validate_relpath, ["README.md", "app/controller/application.rb", ".razorops.yaml", "My Doc.md"],
     ["", "/etc/passwd", "../x", "a/../b", "a/..", "a\\b", "a\x00b", "a\nb"]),
    (validate_registry_host, ["ghcr.io", "127.0.0.1:5000", "localhost", "registry.git.erxes.io"],
     ["", "ghcr.io/x", "-bad.io", "host:port", "a b", "https://ghcr.io"]),
    (validate_git_repo, ["owner/name", "flightjs/Flight", "~gopher/webhook-test", "g/sub/name", "a/de.m.p"],
     ["name", "", "a/../b", "a/-b", "a b/c", "/a/b", "a/b/"]),
    (validate_clone_url, ["", "https://github.com/a/b.git", "ssh://git@h:7999/~g/r.git", "git@example.com:m/d.git"],
     ["file:///etc", "https://", "-uhttps://x", "https://a b", "ext::sh -c x"]),
    (validate_text, ["", "Codertocat", "Markus Felten"], ["a\nb", "x" * 257]),
    (validate_delivery_id, ["8e0dece0-cfbd-11e9-8e4c-f48db7a5cca7", "7:d1"], ["", "a b", "a\x00", "x" * 201]),
]


@pytest.mark.parametrize(("validator", "good"), [(v, g) for v, goods, _ in CASES for g in goods])
def test_accepts_and_returns_value_unchanged(validator, good):
    assert validator(good) == good


@pytest.mark.parametrize(("validator", "bad"), [(v, b) for v, _, bads in CASES for b in bads])
def test_refuses_with_unsafe_input(validator, bad):
    with pytest.raises(UnsafeInput):
        validator(bad)


@pytest.mark.parametrize("validator", [case[0] for case in CASES])
def test_refuses_non_strings(validator):
    with pytest.raises(UnsafeInput, match="must be a string"):
        validator(None)


def test_error_names_the_field():
    with pytest.raises(UnsafeInput, match=r"^detail\.image-digest: "):
        validate_digest("sha256:abc", field="detail.image-digest")


def test_error_truncates_long_values():
    with pytest.raises(UnsafeInput) as info:
        validate_tag("-" + "x" * 500)
    assert len(str(info.value)) < 200

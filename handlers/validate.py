"""Validators for strings that come from outside (payloads, headers) and end up in commands.

Every function takes the raw value plus the ``field`` it came from, returns the value unchanged
when it is safe, and raises ``UnsafeInput`` naming the field otherwise. They never coerce: a value
that needs fixing is refused, so what we log, store and pass to git/registries is what was sent.
Webhook sources turn ``UnsafeInput`` into ``MalformedPayload``; build and bump code can let it
propagate as a permanent failure.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from handlers.errors import UnsafeInput

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEX_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REPO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_REPO_COMPONENT}(?:/{_REPO_COMPONENT})*")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"(?::[0-9]{1,5})?"
)
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_GIT_REPO_PART = re.compile(r"[A-Za-z0-9_~][A-Za-z0-9._~-]*")
_SCP_URL = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+")
_TOKEN = re.compile(r"[\x21-\x7e]{1,200}")

MAX_REF = 255
MAX_PATH = 4096
MAX_REPOSITORY = 255
MAX_TEXT = 256


def _fail(field: str, value: object, why: str) -> UnsafeInput:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return UnsafeInput(f"{field}: {shown} {why}")


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _fail(field, value, f"must be a string, not {type(value).__name__}")
    return value


def validate_sha(value: object, *, field: str = "sha") -> str:
    """A full commit id: 40 lower-case hex (SHA-1 repos) or 64 (SHA-256 repos)."""
    sha = _require_str(value, field)
    if not _HEX_SHA.fullmatch(sha):
        raise _fail(field, sha, "is not a full commit id (40 or 64 lower-case hex characters)")
    return sha


def validate_ref(value: object, *, field: str = "ref") -> str:
    """A full git ref (``refs/...``) following ``git check-ref-format`` rules."""
    ref = _require_str(value, field)
    if not ref.startswith("refs/") or len(ref) > MAX_REF:
        raise _fail(field, ref, f"must be a full ref starting with 'refs/' (at most {MAX_REF} chars)")
    if ".." in ref or "@{" in ref or "//" in ref or _REF_FORBIDDEN.search(ref):
        raise _fail(field, ref, "contains '..', '@{', '//', a space, a control or a special character")
    if ref.endswith(("/", ".", ".lock")):
        raise _fail(field, ref, "must not end with '/', '.' or '.lock'")
    for part in ref.split("/"):
        if part.startswith((".", "-")) or part.endswith(".lock"):
            raise _fail(field, ref, "has a component starting with '.' or '-' or ending in '.lock'")
    return ref


def validate_tag(value: object, *, field: str = "tag") -> str:
    """An OCI tag: ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``."""
    tag = _require_str(value, field)
    if not _TAG.fullmatch(tag):
        raise _fail(field, tag, "is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})")
    return tag


def validate_digest(value: object, *, field: str = "digest") -> str:
    """``sha256:`` plus 64 lower-case hex, or ``""`` when the sender gives none."""
    digest = _require_str(value, field)
    if digest and not _DIGEST.fullmatch(digest):
        raise _fail(field, digest, "is not a sha256 digest (sha256:<64 lower-case hex>)")
    return digest


def validate_repository(value: object, *, field: str = "repository") -> str:
    """An image repository name per the distribution grammar (lower-case path components)."""
    name = _require_str(value, field)
    if len(name) > MAX_REPOSITORY or not _REPOSITORY.fullmatch(name):
        raise _fail(field, name, "is not a valid image repository name (lower-case a-z0-9 ._- components)")
    return name


def validate_registry_host(value: object, *, field: str = "registry") -> str:
    """A registry host name with an optional port: ``ghcr.io``, ``127.0.0.1:5000``."""
    host = _require_str(value, field)
    if len(host) > 253 or not _HOST.fullmatch(host):
        raise _fail(field, host, "is not a host name with an optional :port")
    return host


def validate_relpath(value: object, *, field: str = "path") -> str:
    """A path inside a repository: relative, no ``..`` component, no control characters."""
    path = _require_str(value, field)
    if not path or len(path) > MAX_PATH or _CONTROL.search(path):
        raise _fail(field, path, f"must be non-empty, at most {MAX_PATH} chars, without control characters")
    if path.startswith("/") or "\\" in path:
        raise _fail(field, path, "must be relative and use '/' separators")
    if ".." in path.split("/"):
        raise _fail(field, path, "must not contain a '..' component")
    return path


def validate_git_repo(value: object, *, field: str = "repo") -> str:
    """A repository name as a forge spells it: ``owner/name``, ``group/sub/name``, ``~user/name``."""
    name = _require_str(value, field)
    parts = name.split("/")
    if len(name) > MAX_REPOSITORY or len(parts) < 2 or not all(_GIT_REPO_PART.fullmatch(p) for p in parts):
        raise _fail(field, name, "is not a repository path like 'owner/name'")
    if any(p in (".", "..") or p.startswith("-") for p in parts):
        raise _fail(field, name, "has a '.', '..' or '-'-prefixed component")
    return name


def validate_clone_url(value: object, *, field: str = "clone_url") -> str:
    """An http(s)/ssh/git URL or scp-like ``user@host:path``; ``""`` when unknown."""
    url = _require_str(value, field)
    if not url:
        return url
    if len(url) > 2048 or _CONTROL.search(url) or " " in url or url.startswith("-"):
        raise _fail(field, url, "must not contain spaces or control characters or start with '-'")
    if _SCP_URL.fullmatch(url):
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ssh", "git") or not parts.hostname:
        raise _fail(field, url, "must be an http(s), ssh or git URL with a host")
    return url


def validate_text(value: object, *, field: str = "text", max_len: int = MAX_TEXT) -> str:
    """Free text we only display (a pusher's name): bounded length, no control characters."""
    text = _require_str(value, field)
    if len(text) > max_len or _CONTROL.search(text):
        raise _fail(field, text, f"must be at most {max_len} chars without control characters")
    return text


def validate_delivery_id(value: object, *, field: str = "delivery_id") -> str:
    """A sender's delivery id: 1-200 printable ASCII characters without spaces."""
    token = _require_str(value, field)
    if not _TOKEN.fullmatch(token):
        raise _fail(field, token, "must be 1-200 printable ASCII characters without spaces")
    return token

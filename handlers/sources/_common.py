"""Shared plumbing for sources: constant-time checks, bounded JSON, typed field access.

Every HMAC or token comparison in ``handlers.sources`` goes through this module so that the
rules (fail closed, try current then previous secret, ``hmac.compare_digest``) live once.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from handlers.errors import MalformedPayload, SignatureError, UnsafeInput
from handlers.sources.base import PATH_TOKEN_HEADER, Event, Headers, Parsed, Secrets
from handlers.validate import validate_delivery_id, validate_text

MAX_JSON_DEPTH = 64
NO_SECRET = "no secret configured for this receiver"  # noqa: S105 - a message, not a secret

Json = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])


# --- authenticity -------------------------------------------------------------------------------


def require_secrets(secrets: Secrets) -> tuple[str, ...]:
    """The secrets to try, or ``SignatureError`` when none is configured (fail closed)."""
    candidates = secrets.candidates()
    if not candidates:
        raise SignatureError(NO_SECRET)
    return candidates


def equal(given: str, expected: str) -> bool:
    """Constant-time string equality (UTF-8 bytes, so non-ASCII input cannot raise)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def hmac_hex(secret: str | bytes, body: bytes, algorithm: str = "sha256") -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, getattr(hashlib, algorithm)).hexdigest()


def hmac_hex_matches(secret: str, body: bytes, given_hex: str) -> bool:
    """True when ``given_hex`` is the hex HMAC-SHA256 of ``body`` under ``secret``."""
    return equal(given_hex.strip().lower(), hmac_hex(secret, body))


def any_secret(secrets: Secrets, check: Callable[[str], bool]) -> bool:
    """Try every configured secret (current first); raises when none is configured."""
    return any(check(secret) for secret in require_secrets(secrets))


def header(headers: Headers, *names: str) -> tuple[str, str] | None:
    """The first of ``names`` present (non-empty) in ``headers``, as ``(name, value)``."""
    for name in names:
        value = headers.get(name, "")
        if value:
            return name, value
    return None


def strip_scheme(value: str, prefix: str, header_name: str) -> str:
    """``sha256=<hex>`` → ``<hex>``; a missing prefix is a ``SignatureError`` naming the header."""
    if not value.startswith(prefix):
        raise SignatureError(f"{header_name} must look like '{prefix}<hex>'")
    return value[len(prefix):]


def verify_hmac_header(
    headers: Headers, body: bytes, secrets: Secrets, names: tuple[str, ...], prefix: str = ""
) -> None:
    """Verify the first present header of ``names`` as ``prefix + hex(HMAC-SHA256(body))``."""
    require_secrets(secrets)
    found = header(headers, *names)
    if found is None:
        raise SignatureError(f"missing signature header (expected one of {', '.join(names)})")
    name, value = found
    given = strip_scheme(value, prefix, name) if prefix else value
    if not any_secret(secrets, lambda secret: hmac_hex_matches(secret, body, given)):
        raise SignatureError(f"{name} does not match the body signed with the configured secret")


def token_matches(value: str, secret: str) -> bool:
    """A shared token sent verbatim, or as ``Bearer <token>`` (both constant time)."""
    return equal(value, secret) | equal(value, f"Bearer {secret}")


def verify_token_header(headers: Headers, secrets: Secrets, default_header: str) -> None:
    """Verify a shared token carried in ``secrets.header`` (or ``default_header``)."""
    require_secrets(secrets)
    name = (secrets.header or default_header).lower()
    value = headers.get(name, "")
    if not value:
        raise SignatureError(f"missing token header {name}")
    if not any_secret(secrets, lambda secret: token_matches(value, secret)):
        raise SignatureError(f"{name} does not match the configured token")




def verify_path_token(headers: Headers, secrets: Secrets) -> None:
    """For senders that cannot sign: the URL's secret segment, put in a header by the edge.

    Weaker than a signature: anyone who learns the URL (logs, proxies) can forge deliveries.
    """
    require_secrets(secrets)
    value = headers.get(PATH_TOKEN_HEADER, "")
    if not value:
        raise SignatureError("missing path token (configure the hook URL with its token segment)")
    if not any_secret(secrets, lambda secret: equal(value, secret)):
        raise SignatureError("path token does not match the configured token")


# --- parsing ------------------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise MalformedPayload(f"body is not strict JSON ({name} is not allowed)")


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON, iteratively (no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def load_json(body: bytes) -> Json:
    """Decode a JSON object body; at most ``MAX_JSON_DEPTH`` levels of nesting."""
    if body.lstrip().startswith(b"payload="):
        raise MalformedPayload("form-encoded payloads are not supported; set the hook to application/json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = _load_slowly(body)  # the standard parser's verdict and message, on the error path only
    if not isinstance(data, dict):
        raise MalformedPayload(f"JSON body must be an object, not {type(data).__name__}")
    # nesting cannot be deeper than the number of opening brackets: only a body with many walks
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        raise MalformedPayload(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def _load_slowly(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise MalformedPayload(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPayload(f"body is not valid JSON: {exc}") from None


_MISSING = object()


def get(data: Json, path: str, default: Any = _MISSING) -> Any:
    """Follow a dotted ``path``; a missing key raises unless ``default`` is given."""
    node: Any = data
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            if default is _MISSING:
                raise MalformedPayload(f"missing field {path}")
            return default
        node = node[key]
    return node


def get_str(data: Json, path: str, default: str | None = None) -> str:
    """A string field; ``null`` or absent gives ``default`` if set, else ``MalformedPayload``."""
    value = get(data, path, None)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise MalformedPayload(f"field {path} must be a string, got {type(value).__name__}")
    return value


def get_dict(data: Json, path: str, *, optional: bool = False) -> Json:
    value = get(data, path, None)
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise MalformedPayload(f"field {path} must be an object, got {type(value).__name__}")
    return value


def get_list(data: Json, path: str, *, optional: bool = False) -> list[Any]:
    value = get(data, path, None)
    if value is None and optional:
        return []
    if not isinstance(value, list):
        raise MalformedPayload(f"field {path} must be a list, got {type(value).__name__}")
    return value


def get_bool(data: Json, path: str, default: bool = False) -> bool:
    value = get(data, path, default)
    if not isinstance(value, bool):
        raise MalformedPayload(f"field {path} must be a boolean, got {type(value).__name__}")
    return value


def delivery_id(headers: Headers, *names: str) -> str:
    """The first present delivery header, validated; ``""`` when the sender sends none."""
    found = header(headers, *names)
    if found is None:
        return ""
    name, value = found
    return validate_delivery_id(value, field=name)


def malformed_on_unsafe(func: F) -> F:
    """Decorate ``parse``: any ``UnsafeInput`` from a validator becomes ``MalformedPayload``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UnsafeInput as exc:
            raise MalformedPayload(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def event_name(headers: Headers, *names: str) -> str:
    """The sender's event-type header (first of ``names``); missing → ``MalformedPayload``."""
    found = header(headers, *names)
    if found is None:
        raise MalformedPayload(f"missing {names[0]} header")
    return validate_text(found[1], field=found[0], max_len=100)


def ignore(reason: str, delivery: str = "", event_type: str = "") -> Parsed:
    return Parsed(ignored=reason, delivery_id=delivery, event_type=event_type)


def outcome(events: Sequence[Event], reason: str, delivery: str = "", event_type: str = "") -> Parsed:
    """``Parsed`` with ``events``, or ignored with ``reason`` when there are none."""
    if not events:
        return ignore(reason, delivery, event_type)
    return Parsed(events=tuple(events), delivery_id=delivery, event_type=event_type)

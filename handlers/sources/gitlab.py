"""GitLab push and tag-push hooks.

Authenticity, either of:
- ``X-Gitlab-Token`` equal (constant time) to the secret — GitLab's classic shared token;
- the Standard Webhooks signing token (opt-in, feature-flagged in GitLab; see SPECS.md):
  ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>``
  where the secret is ``whsec_<base64 key>``. Tried only when the secret has that form; the
  timestamp must be within ``TOLERANCE_SECONDS`` of our clock (replay window).

``Push Hook`` / ``Tag Push Hook`` → one ``GitPushed``; GitLab lists at most 20 commits, so
``paths_complete`` is False when ``total_commits_count`` exceeds the list (and on create/delete).
Delivery id: ``Idempotency-Key`` (stable across retries, GitLab ≥ 17.4), else
``X-Gitlab-Event-UUID``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from handlers.errors import SignatureError
from handlers.events import GitPushed
from handlers.sources._build import changed_paths, git_pushed, is_zero
from handlers.sources._common import (
    Json,
    any_secret,
    delivery_id,
    equal,
    event_name,
    get,
    get_list,
    get_str,
    load_json,
    malformed_on_unsafe,
)
from handlers.sources.base import Headers, Parsed, Secrets

TOKEN_HEADER = "x-gitlab-token"
EVENT_HEADER = "x-gitlab-event"
DELIVERY_HEADERS = ("idempotency-key", "x-gitlab-event-uuid")
PUSH_EVENTS = ("Push Hook", "Tag Push Hook")
SIGNING_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


def signing_key(secret: str) -> bytes | None:
    """The HMAC key of a ``whsec_<base64>`` signing token; None for a plain token."""
    if not secret.startswith(SIGNING_PREFIX):
        return None
    try:
        return base64.b64decode(secret[len(SIGNING_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return None


def standard_signature_matches(key: bytes, msg_id: str, stamp: str, body: bytes, header: str) -> bool:
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.removeprefix("v1,") for part in header.split() if part.startswith("v1,")]
    return any([equal(candidate, expected) for candidate in given])


@dataclass(frozen=True)
class GitLabSource:
    name: str = "gitlab"
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        if any_secret(secrets, lambda secret: self._authentic(headers, body, secret)):
            return
        if not headers.get(TOKEN_HEADER) and not headers.get("webhook-signature"):
            raise SignatureError(f"missing {TOKEN_HEADER} (or webhook-signature) header")
        raise SignatureError("neither X-Gitlab-Token nor webhook-signature matches the configured secret")

    def _authentic(self, headers: Headers, body: bytes, secret: str) -> bool:
        token = headers.get(TOKEN_HEADER, "")
        if token and equal(token, secret):
            return True
        key = signing_key(secret)
        return key is not None and self._signed(headers, body, key)

    def _signed(self, headers: Headers, body: bytes, key: bytes) -> bool:
        msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
        signature = headers.get("webhook-signature", "")
        if not (msg_id and stamp.isdigit() and signature):
            return False
        if abs(self.clock() - int(stamp)) > TOLERANCE_SECONDS:
            raise SignatureError(f"webhook-timestamp is more than {TOLERANCE_SECONDS}s from our clock")
        return standard_signature_matches(key, msg_id, stamp, body, signature)

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        event_type = event_name(headers, EVENT_HEADER)
        data = load_json(body)
        delivery = delivery_id(headers, *DELIVERY_HEADERS)
        if event_type not in PUSH_EVENTS:
            return Parsed(ignored=f"event type {event_type} is not handled", delivery_id=delivery,
                          event_type=event_type)
        return Parsed(events=(self._push(data, delivery),), delivery_id=delivery, event_type=event_type)

    def _push(self, data: Json, delivery: str) -> GitPushed:
        commits = get_list(data, "commits", optional=True)
        paths, listed = changed_paths(commits)
        total = get(data, "total_commits_count", len(commits))
        truncated = not isinstance(total, int) or total > len(commits)
        reshaped = is_zero(get(data, "before")) or is_zero(get(data, "after"))
        return git_pushed(
            repo=get_str(data, "project.path_with_namespace"),
            ref=get_str(data, "ref"),
            before=get(data, "before"),
            after=get(data, "after"),
            pusher=get_str(data, "user_username", default="") or get_str(data, "user_name", default=""),
            delivery_id=delivery,
            source=self.name,
            changed=paths,
            clone_url=get_str(data, "project.git_http_url", default=""),
            paths_complete=listed and not truncated and not reshaped,
        )

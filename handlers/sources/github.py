"""GitHub (and GHCR through GitHub's ``package``/``registry_package`` events).

Authenticity: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``. The legacy
SHA-1 ``X-Hub-Signature`` is refused on purpose: SHA-1 HMACs are still sound, but GitHub has
sent the SHA-256 header since 2020 and accepting both doubles what we must get right.

Events:
- ``push`` → one ``GitPushed``. ``changed_paths`` is the union of ``added/modified/removed``
  over ``commits`` and ``head_commit``; it is marked incomplete when GitHub may have cut the
  list (20+ commits) or when the list does not describe the change (create, delete, force).
- ``ping`` → ``Parsed(ping=True)``.
- ``create`` → ignored: the payload has no commit sha, and GitHub sends a ``push`` with
  ``created: true`` and the sha for the same ref.
- ``delete`` → ``GitPushed`` with ``after = before = ZERO_SHA`` (GitHub does not say what the
  ref pointed at). A ``push`` with ``deleted: true`` usually arrives too; a deletion does
  nothing but end the ref's builds, so the two are harmless to keep apart.
- ``package`` / ``registry_package`` → see ``handlers.sources._ghcr``.

Delivery id: ``<X-GitHub-Hook-ID>:<X-GitHub-Delivery>`` (the delivery GUID is shared by every
hook subscribed to the event, so the hook id keeps two receivers from deduping each other).
"""

from __future__ import annotations

from dataclasses import dataclass

from handlers.errors import SignatureError
from handlers.events import ZERO_SHA
from handlers.sources import _ghcr
from handlers.sources._build import changed_paths, full_ref, git_pushed
from handlers.sources._common import (
    Json,
    event_name,
    get,
    get_bool,
    get_dict,
    get_list,
    get_str,
    load_json,
    malformed_on_unsafe,
    require_secrets,
    verify_hmac_header,
)
from handlers.sources.base import Headers, Parsed, Secrets
from handlers.validate import validate_delivery_id

SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
HOOK_ID_HEADER = "x-github-hook-id"
TRUNCATED_AT = 20
"""GitHub lists at most 20 commits in a push payload."""


def github_delivery_id(headers: Headers) -> str:
    delivery = headers.get(DELIVERY_HEADER, "")
    if not delivery:
        return ""
    validate_delivery_id(delivery, field=DELIVERY_HEADER)
    hook = headers.get(HOOK_ID_HEADER, "")
    return f"{validate_delivery_id(hook, field=HOOK_ID_HEADER)}:{delivery}" if hook else delivery


def push_paths(data: Json) -> tuple[tuple[str, ...], bool]:
    commits = get_list(data, "commits", optional=True)
    head = get(data, "head_commit", None)
    listed = commits + ([head] if head is not None else [])
    paths, complete = changed_paths(listed)
    cut = len(commits) >= TRUNCATED_AT
    reshaped = any(get_bool(data, key) for key in ("created", "deleted", "forced"))
    return paths, complete and not cut and not reshaped


def parse_push(data: Json, delivery: str, source: str) -> Parsed:
    paths, complete = push_paths(data)
    event = git_pushed(
        repo=get_str(data, "repository.full_name"),
        ref=get_str(data, "ref"),
        before=get(data, "before"),
        after=get(data, "after"),
        pusher=get_str(data, "pusher.name", default=""),
        delivery_id=delivery,
        source=source,
        changed=paths,
        clone_url=get_str(data, "repository.clone_url", default=""),
        forced=get_bool(data, "forced"),
        paths_complete=complete,
    )
    return Parsed(events=(event,), delivery_id=delivery, event_type="push")


def parse_delete(data: Json, delivery: str, source: str) -> Parsed:
    event = git_pushed(
        repo=get_str(data, "repository.full_name"),
        ref=full_ref(get(data, "ref"), get(data, "ref_type")),
        before=ZERO_SHA,
        after=ZERO_SHA,
        pusher=get_str(data, "sender.login", default=""),
        delivery_id=delivery,
        source=source,
        clone_url=get_str(data, "repository.clone_url", default=""),
        paths_complete=False,
    )
    return Parsed(events=(event,), delivery_id=delivery, event_type="delete")


@dataclass(frozen=True)
class GitHubSource:
    name: str = "github"

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        require_secrets(secrets)
        if not headers.get(SIGNATURE_HEADER) and headers.get("x-hub-signature"):
            raise SignatureError(
                "only the legacy SHA-1 X-Hub-Signature was sent; X-Hub-Signature-256 (sha256) is required"
            )
        verify_hmac_header(headers, body, secrets, (SIGNATURE_HEADER,), "sha256=")

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        event_type = event_name(headers, EVENT_HEADER)
        data = load_json(body)
        delivery = github_delivery_id(headers)
        if event_type == "push":
            return parse_push(data, delivery, self.name)
        if event_type == "ping":
            return Parsed(ping=True, delivery_id=delivery, event_type=event_type)
        if event_type == "delete":
            return parse_delete(data, delivery, self.name)
        if event_type == "create":
            reason = "create events carry no commit sha; the push event for the same ref is used"
            return Parsed(ignored=reason, delivery_id=delivery, event_type=event_type)
        if event_type in _ghcr.EVENT_KEYS:
            return _ghcr.parse_package(get_dict(data, event_type), data, delivery, event_type, self.name)
        return Parsed(ignored=f"event type {event_type} is not handled", delivery_id=delivery,
                      event_type=event_type)

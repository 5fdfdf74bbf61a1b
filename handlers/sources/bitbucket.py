"""Bitbucket Cloud (``repo:push``) and Bitbucket Data Center (``repo:refs_changed``).

Authenticity: ``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`` (Cloud since
2023, Data Center); one integrator reports ``X-Hub-Signature-256`` for Cloud, so both are read.

One ``GitPushed`` per ref change (a push can move several refs). Bitbucket payloads carry no
file lists, so ``changed_paths`` is empty and ``paths_complete`` False: path filters must
treat such pushes as "anything may have changed".
- Cloud: ``push.changes[]`` with ``old``/``new`` (null on create/delete), ref from
  ``new|old.type`` + ``name``; repo ``repository.full_name``; clone URL
  ``https://bitbucket.org/<full_name>.git``; pusher ``actor.nickname``. Mercurial bookmarks etc. are skipped.
- Data Center: ``changes[]`` with ``ref.id``, ``fromHash``, ``toHash``; repo
  ``<project.key>/<slug>``; clone URL the ``http`` entry of ``links.clone``; pusher ``actor.name``.
``diagnostics:ping`` (Data Center "Test connection") → ping.
Delivery id: ``X-Request-UUID`` (Cloud) or ``X-Request-Id`` (Data Center).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers.errors import MalformedPayload
from handlers.events import GitPushed
from handlers.sources._build import full_ref, git_pushed
from handlers.sources._common import (
    Json,
    delivery_id,
    event_name,
    get,
    get_bool,
    get_dict,
    get_list,
    get_str,
    load_json,
    malformed_on_unsafe,
    verify_hmac_header,
)
from handlers.sources.base import Headers, Parsed, Secrets

SIGNATURE_HEADERS = ("x-hub-signature", "x-hub-signature-256")
EVENT_HEADER = "x-event-key"
DELIVERY_HEADERS = ("x-request-uuid", "x-request-id")
GIT_REF_TYPES = ("branch", "tag")


def cloud_clone_url(repo: str) -> str:
    """Bitbucket Cloud lives at bitbucket.org; ``links.html`` is not reliable (docs sample)."""
    return f"https://bitbucket.org/{repo}.git"


def cloud_change(change: Any, data: Json, delivery: str, source: str) -> GitPushed | None:
    if not isinstance(change, dict):
        raise MalformedPayload("push.changes[] must be objects")
    new, old = get_dict(change, "new", optional=True), get_dict(change, "old", optional=True)
    side = new or old
    if not side or get(side, "type", None) not in GIT_REF_TYPES:
        return None
    repo = get_str(data, "repository.full_name")
    return git_pushed(
        repo=repo,
        ref=full_ref(get(side, "name"), get(side, "type")),
        before=get(old, "target.hash") if old else None,
        after=get(new, "target.hash") if new else None,
        pusher=get_str(data, "actor.nickname", default="") or get_str(data, "actor.display_name", default=""),
        delivery_id=delivery,
        source=source,
        clone_url=cloud_clone_url(repo),
        forced=get_bool(change, "forced"),
        paths_complete=False,
    )


def dc_clone_url(data: Json) -> str:
    links = get_list(data, "repository.links.clone", optional=True)
    return next((get_str(link, "href") for link in links if isinstance(link, dict)
                 and link.get("name") == "http"), "")


def dc_change(change: Any, data: Json, delivery: str, source: str) -> GitPushed:
    if not isinstance(change, dict):
        raise MalformedPayload("changes[] must be objects")
    repo = f"{get_str(data, 'repository.project.key')}/{get_str(data, 'repository.slug')}"
    return git_pushed(
        repo=repo,
        ref=get_str(change, "ref.id"),
        before=get(change, "fromHash"),
        after=get(change, "toHash"),
        pusher=get_str(data, "actor.name", default=""),
        delivery_id=delivery,
        source=source,
        clone_url=dc_clone_url(data),
        paths_complete=False,
    )


@dataclass(frozen=True)
class BitbucketSource:
    name: str = "bitbucket"

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        verify_hmac_header(headers, body, secrets, SIGNATURE_HEADERS, "sha256=")

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        event_type = event_name(headers, EVENT_HEADER)
        data = load_json(body)
        delivery = delivery_id(headers, *DELIVERY_HEADERS)
        if event_type == "diagnostics:ping":
            return Parsed(ping=True, delivery_id=delivery, event_type=event_type)
        if event_type == "repo:push":
            changes = get_list(data, "push.changes")
            found = [cloud_change(c, data, delivery, self.name) for c in changes]
            events = tuple(e for e in found if e is not None)
        elif event_type == "repo:refs_changed":
            events = tuple(dc_change(c, data, delivery, self.name) for c in get_list(data, "changes"))
        else:
            return Parsed(ignored=f"event type {event_type} is not handled", delivery_id=delivery,
                          event_type=event_type)
        if not events:
            return Parsed(ignored="no branch or tag changes in this push", delivery_id=delivery,
                          event_type=event_type)
        return Parsed(events=events, delivery_id=delivery, event_type=event_type)

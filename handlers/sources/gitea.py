"""Gitea and Forgejo (one implementation, two names; Forgejo prefers its ``X-Forgejo-*`` headers).

Authenticity: ``X-Gitea-Signature`` / ``X-Forgejo-Signature`` (also ``X-Gogs-Signature``) =
bare ``hex(HMAC-SHA256(secret, raw body))``, or ``X-Hub-Signature-256: sha256=<same>``.
Old Gitea versions also put the secret inside the JSON body (``"secret": ...``); that field is
never read — anyone who saw one delivery could replay it — so such hooks must be re-created with
a signing secret.

Events:
- ``push`` (branches and tags) → one ``GitPushed``; Gitea has no created/deleted/forced flags, so
  create/delete come from zero shas, ``forced`` is always False, and ``paths_complete`` is False
  on create/delete, when ``total_commits`` exceeds the list, or when a commit lists no paths
  (old Gitea).
- ``create`` → ``GitPushed`` from ``ref``/``ref_type``/``sha`` with ``before = ZERO_SHA``.
- ``delete`` → ``GitPushed`` with ``after = before = ZERO_SHA`` (Gitea does not say the old sha).
Delivery id: ``X-Forgejo-Delivery`` (forgejo only), ``X-Gitea-Delivery``, ``X-Gogs-Delivery``.
"""

from __future__ import annotations

from dataclasses import dataclass

from handlers.errors import SignatureError
from handlers.events import ZERO_SHA, GitPushed
from handlers.sources._build import changed_paths, full_ref, git_pushed, is_zero
from handlers.sources._common import (
    Json,
    delivery_id,
    event_name,
    get,
    get_list,
    get_str,
    header,
    load_json,
    malformed_on_unsafe,
    require_secrets,
    verify_hmac_header,
)
from handlers.sources.base import Headers, Parsed, Secrets

HUB_SIGNATURE = "x-hub-signature-256"


def pusher_name(data: Json, key: str) -> str:
    return get_str(data, f"{key}.login", default="") or get_str(data, f"{key}.username", default="")


@dataclass(frozen=True)
class GiteaSource:
    name: str = "gitea"
    prefixes: tuple[str, ...] = ("x-gitea", "x-gogs")

    def _headers(self, suffix: str) -> tuple[str, ...]:
        return tuple(f"{prefix}-{suffix}" for prefix in self.prefixes)

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        require_secrets(secrets)
        bare = self._headers("signature")
        if header(headers, *bare):
            verify_hmac_header(headers, body, secrets, bare)
        elif headers.get(HUB_SIGNATURE):
            verify_hmac_header(headers, body, secrets, (HUB_SIGNATURE,), "sha256=")
        else:
            raise SignatureError(f"missing signature header (expected {bare[0]} or {HUB_SIGNATURE})")

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        event_type = event_name(headers, *self._headers("event"))
        data = load_json(body)
        delivery = delivery_id(headers, *self._headers("delivery"))
        handlers = {"push": self._push, "create": self._create, "delete": self._delete}
        if event_type not in handlers:
            return Parsed(ignored=f"event type {event_type} is not handled", delivery_id=delivery,
                          event_type=event_type)
        event = handlers[event_type](data, delivery)
        return Parsed(events=(event,), delivery_id=delivery, event_type=event_type)

    def _push(self, data: Json, delivery: str) -> GitPushed:
        commits = get_list(data, "commits", optional=True)
        head = get(data, "head_commit", None)
        paths, listed = changed_paths(commits + ([head] if head is not None else []))
        total = get(data, "total_commits", len(commits))
        truncated = not isinstance(total, int) or total > len(commits)
        reshaped = is_zero(get(data, "before")) or is_zero(get(data, "after"))
        return git_pushed(
            **self._repo(data),
            ref=get_str(data, "ref"),
            before=get(data, "before"),
            after=get(data, "after"),
            pusher=pusher_name(data, "pusher"),
            delivery_id=delivery,
            changed=paths,
            paths_complete=listed and not truncated and not reshaped,
        )

    def _create(self, data: Json, delivery: str) -> GitPushed:
        return git_pushed(
            **self._repo(data),
            ref=full_ref(get(data, "ref"), get(data, "ref_type")),
            before=ZERO_SHA,
            after=get_str(data, "sha"),
            pusher=pusher_name(data, "sender"),
            delivery_id=delivery,
            paths_complete=False,
        )

    def _delete(self, data: Json, delivery: str) -> GitPushed:
        return git_pushed(
            **self._repo(data),
            ref=full_ref(get(data, "ref"), get(data, "ref_type")),
            before=ZERO_SHA,
            after=ZERO_SHA,
            pusher=pusher_name(data, "sender"),
            delivery_id=delivery,
            paths_complete=False,
        )

    def _repo(self, data: Json) -> dict[str, str]:
        return {
            "repo": get_str(data, "repository.full_name"),
            "clone_url": get_str(data, "repository.clone_url", default=""),
            "source": self.name,
        }


GITEA = GiteaSource()
FORGEJO = GiteaSource(name="forgejo", prefixes=("x-forgejo", "x-gitea", "x-gogs"))

"""Telling people what happened: per-environment release notifications and commit statuses.

- ``synced``: after a sync result is stored, each of the environment's ``notify`` targets
  (generic JSON ``webhook`` or ``slack``) hears ``success`` (Healthy) or ``failure`` (Degraded,
  SyncFailed) when its ``on`` list asks for it. It is sent once per release (the events the sync
  carried) or when the outcome changes (a reconcile finds drift, or recovery), never on every
  periodic reconcile.
- ``build_finished``: a failed build tells the environments that take the repo's images.
- ``build_started``/``build_finished``: the repo's ``status`` (GitHub, GitLab or Gitea) gets
  ``pending`` then ``success``/``failure`` on the built commit.

Best effort by contract: short timeouts, failures logged without the URL or token (both are
secrets), and nothing here raises into the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from handlers.build.report import BuildReport
from handlers.errors import ConfigError
from handlers.events import GitPushed
from handlers.settings import CommitStatusConfig, EnvironmentConfig, NotifyConfig, RepoConfig
from service.config import Config

log = logging.getLogger("shipline.notify")
TIMEOUT = httpx.Timeout(5.0, connect=2.0)
FAILING = ("Degraded", "SyncFailed")
LAST_KEY = "shipline:notify:last:"
GITLAB_STATES = {"pending": "pending", "success": "success", "failure": "failed", "error": "canceled"}
LISTED_IDS = 100
"""Ids a notification lists; the counts say how many there were. A sync after a backlog covers
tens of thousands of events: listing them all made a webhook body of megabytes."""


@dataclass(frozen=True)
class Release:
    """What one environment's notification says (the generic webhook body, as is)."""

    environment: str
    outcome: str  # success | failure
    revision: str = ""
    images: list[str] = field(default_factory=list)
    health: str = ""
    reason: str = ""
    correlation_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    url: str = ""

    @property
    def correlation_id(self) -> str:
        return self.correlation_ids[0] if self.correlation_ids else ""


def webhook_payload(release: Release) -> dict[str, Any]:
    """The release as JSON, its id lists cut to their first ``LISTED_IDS`` beside their full counts."""
    body = {"type": "shipline.release", **asdict(release), "correlation_id": release.correlation_id}
    for name in ("event_ids", "correlation_ids"):
        body[name.replace("_ids", "_count")] = len(body[name])
        body[name] = body[name][:LISTED_IDS]
    return body


def slack_payload(release: Release) -> dict[str, Any]:
    """Slack-compatible (also Mattermost, Rocket.Chat): ``text`` fallback plus ``blocks``."""
    icon = ":white_check_mark:" if release.outcome == "success" else ":x:"
    rev = release.revision[:10] or "-"
    text = f"{icon} {release.environment}: {release.health or release.outcome} at {rev}"
    fields = [f"*Environment*\n{release.environment}", f"*Health*\n{release.health or '-'}",
              f"*Revision*\n`{rev}`", f"*Correlation*\n`{release.correlation_id or '-'}`"]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(text)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _slack_escape(f)} for f in fields]},
    ]
    details = [f"`{i}`" for i in release.images[:10]]
    if release.reason:
        details.append(release.reason[:500])
    if release.url:
        details.append(f"<{release.url}|open the dashboard>")
    if details:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(d)}
                                                        for d in details]})
    return {"text": _slack_escape(text), "blocks": blocks}


def _slack_escape(text: str) -> str:
    """Slack's three control characters; a link we build ourselves (``<url|...>``) stays a link."""
    if text.startswith("<http") and text.endswith(">"):
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def send_release(targets: Iterable[NotifyConfig], release: Release, *, client: httpx.Client | None = None) -> int:
    """Post ``release`` to every target whose ``on`` includes its outcome; returns how many took it."""
    sent = 0
    with _client(client) as http:
        for index, target in enumerate(targets):
            if release.outcome not in target.on:
                continue
            body = slack_payload(release) if target.kind == "slack" else webhook_payload(release)
            sent += _post(http, target.url.resolve, body, what=f"{target.kind} notify[{index}]",
                          environment=release.environment, correlation_id=release.correlation_id)
    return sent


def status_request(cfg: CommitStatusConfig, sha: str, state: str, description: str,
                   target_url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(url, headers, body) for one commit status; ``state`` in pending|success|failure|error."""
    token = cfg.token.resolve()
    if cfg.provider in ("github", "gitea"):  # Gitea's status API is GitHub's shape, states included
        body = {"state": state, "context": cfg.context, "description": description[:140]}
        if target_url:
            body["target_url"] = target_url
        if cfg.provider == "gitea":
            headers = {"Authorization": f"token {token}"}
        else:
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                       "X-GitHub-Api-Version": "2022-11-28"}
        return f"{cfg.base_url}/repos/{cfg.repository}/statuses/{sha}", headers, body
    project = quote(cfg.repository, safe="")  # a numeric id, or group/project → group%2Fproject
    body = {"state": GITLAB_STATES[state], "name": cfg.context, "description": description[:255]}
    if target_url:
        body["target_url"] = target_url
    return f"{cfg.base_url}/projects/{project}/statuses/{sha}", {"PRIVATE-TOKEN": token}, body


def post_status(cfg: CommitStatusConfig, sha: str, state: str, description: str, target_url: str = "",
                *, client: httpx.Client | None = None) -> bool:
    with _client(client) as http:
        return bool(_post(http, lambda: status_request(cfg, sha, state, description, target_url),
                          None, what=f"{cfg.provider} commit status", state=state, sha=sha[:12]))


# -- what the pipeline calls -------------------------------------------------------------------
def build_started(config: Config, repo: RepoConfig, event: GitPushed, event_id: str) -> None:
    if repo.status is not None:
        post_status(repo.status, event.after, "pending", f"building {event.short_ref}",
                    event_url(config, event_id))


def build_finished(config: Config, repo: RepoConfig, event: GitPushed, event_id: str,
                   report: BuildReport) -> None:
    if repo.status is not None:
        state, text = _build_state(report)
        post_status(repo.status, report.sha or event.after, state, text, event_url(config, event_id))
    if report.failed:
        reason = "; ".join(f"{i.name}: build failed {i.reason}".strip() for i in report.failed)
        built = {i.name for i in repo.images}
        for env in config.environments:
            if env.notify and any(e.image in built for e in env.images):
                send_release(env.notify, Release(env.name, "failure", revision=report.sha,
                                                 images=[i.name for i in report.failed], health="BuildFailed",
                                                 reason=reason[:2000], correlation_ids=[event_id],
                                                 event_ids=[event_id], url=event_url(config, event_id)))


def rolled_back(config: Config, env: EnvironmentConfig, rollback: dict[str, Any]) -> None:
    """A rollback is news for everyone the environment tells about failures."""
    if env.notify:
        send_release(env.notify, Release(env.name, "failure", revision=str(rollback.get("commit", "")),
                                         images=[f"{i}:{t}" for i, t in (rollback.get("held_back") or {}).items()],
                                         health="RolledBack", reason=str(rollback.get("reason", ""))[:2000]))


def _build_state(report: BuildReport) -> tuple[str, str]:
    images = report.images
    if report.failed:
        return "failure", f"{len(report.failed)} of {len(images)} image(s) failed"
    if images and all(i.status == "superseded" for i in images):
        return "error", "superseded by a newer push"
    return "success", (f"{len(report.pushed)} image(s) pushed" if images
                       else report.nothing_to_build_reason or "nothing to build")


def synced(config: Config, r: Any, env: EnvironmentConfig, status: dict[str, Any],
           event_ids: list[str], correlation_ids: list[str]) -> None:
    """After a sync result is stored: tell ``env.notify`` when it is news (see the module doc)."""
    health = str(status.get("health", "Unknown"))
    outcome = "success" if health == "Healthy" else "failure" if health in FAILING else ""
    if not env.notify or not outcome:
        return
    signature = json.dumps([outcome, _digest(event_ids)] if event_ids else [outcome])
    previous = r.set(LAST_KEY + env.name, signature, get=True)
    last_outcome = json.loads(previous)[0] if previous else None
    if previous == signature or (not event_ids and last_outcome == outcome):
        return
    first = correlation_ids[0] if correlation_ids else ""
    send_release(env.notify, Release(
        env.name, outcome, revision=str(status.get("revision") or ""), images=list(status.get("images") or []),
        health=health, reason=str(status.get("reason") or "")[:2000], correlation_ids=correlation_ids,
        event_ids=event_ids, url=event_url(config, first) if first else ""))


def _digest(event_ids: list[str]) -> str:
    """Which events a release carried, in a key of fixed size (the ids themselves ran to megabytes)."""
    return hashlib.sha256("\n".join(sorted(event_ids)).encode()).hexdigest()


def event_url(config: Config, event_id: str) -> str:
    base = config.server.public_url.rstrip("/")
    return f"{base}/#event={event_id}" if base and event_id else ""


# -- plumbing ----------------------------------------------------------------------------------
class _client:
    """The given client, or a short-lived one with Shipline's timeouts."""

    def __init__(self, given: httpx.Client | None) -> None:
        self.given, self.own = given, None

    def __enter__(self) -> httpx.Client:
        if self.given is not None:
            return self.given
        self.own = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        return self.own

    def __exit__(self, *exc: object) -> None:
        if self.own is not None:
            self.own.close()


def _post(http: httpx.Client, request: Any, body: Any, *, what: str, **context: Any) -> int:
    """POST; 1 if the receiver took it. ``request`` resolves the secret URL (or the whole request)
    late; any failure is logged with ``what`` and ``context`` only, never the URL or token."""
    try:
        if body is None:
            url, headers, body = request()
        else:
            url, headers = request(), {}
        response = http.post(url, json=body, headers=headers)
    except Exception as exc:  # noqa: BLE001 - best effort: a notification never fails the pipeline
        why = str(exc) if isinstance(exc, ConfigError) else type(exc).__name__  # httpx errors name the URL
        log.warning("%s not sent: %s", what, why, extra=context)
        return 0
    if response.status_code >= 300:
        log.warning("%s refused: HTTP %d", what, response.status_code, extra=context)
        return 0
    log.info("%s sent", what, extra=context)
    return 1

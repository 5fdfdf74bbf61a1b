"""Polling, the safety net for missed webhooks (off unless a ``poll_interval`` is set).

An image with ``poll_interval`` (under an environment's ``images``) has its tags listed in its
registry (the distribution API's ``tags/list``); a repo with ``poll_interval`` has its branches
and release tags read with ``git ls-remote``. Anything new becomes the event a webhook would have
made, with ``source: poll``, and goes through the same dedupe key (``Router.semantic_key``): if
the webhook came, or comes later, one of the two is a duplicate. The first poll of an image or
repo takes what it finds as known (it does not replay history); only changes after it are events.
One worker polls each item per interval (a Redis key with that lifetime).
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable

from handlers.build.registry import client_for
from handlers.errors import TransientError
from handlers.events import ZERO_SHA, Event, GitPushed, ImagePushed, event_to_dict
from handlers.images import ImageRef, normalize_image
from handlers.settings import RepoConfig
from service.config import Config
from service.store import EventRecord, new_event_id

log = logging.getLogger("shipline.poll")
LS_REMOTE_TIMEOUT = 60
Submit = Callable[[EventRecord, str], str | None]
"""``submit(record, dedupe key)``: record and route it; the holder's id when it was a duplicate."""


class Poller:
    def __init__(self, config: Config, r: object, submit: Submit) -> None:
        self.config = config
        self.r = r
        self.submit = submit

    def tick(self) -> list[str]:
        """Poll whatever is due; the ids of the events it made."""
        made: list[str] = []
        for image, interval in self._images().items():
            if self.r.set(f"shipline:poll:due:image:{image}", "1", nx=True, ex=interval):
                made += self._guarded(self.poll_image, image)
        for repo in self.config.repos:
            if repo.poll_interval and self.r.set(f"shipline:poll:due:repo:{repo.name}", "1", nx=True,
                                                 ex=repo.poll_interval):
                made += self._guarded(self.poll_repo, repo)
        return made

    def _images(self) -> dict[str, int]:
        """Each polled image (normalised) and its shortest interval over the environments."""
        out: dict[str, int] = {}
        for env in self.config.environments:
            for image in env.images:
                if image.poll_interval:
                    key = normalize_image(image.image)
                    out[key] = min(out.get(key, image.poll_interval), image.poll_interval)
        return out

    def _guarded(self, poll: Callable[..., list[str]], item: object) -> list[str]:
        try:
            return poll(item)
        except Exception as exc:  # noqa: BLE001 - one broken registry or remote must not stop the others
            log.warning("poll of %s failed: %s", getattr(item, "name", item), type(exc).__name__)
            return []

    # -- images -------------------------------------------------------------------------------
    def poll_image(self, image: str) -> list[str]:
        ref = ImageRef.parse(image)
        client = client_for(ref, self.config.registries)
        try:
            tags = client.tags(ref.repository)
            new = self._new(f"shipline:poll:known:image:{normalize_image(image)}", tags)
            events = [ImagePushed(registry=ref.host, repository=ref.repository, tag=tag,
                                  digest=client.digest(ref.repository, tag), delivery_id=f"poll:{tag}",
                                  source="poll") for tag in new]
        finally:
            client.close()
        return self._submit_all(events)

    # -- repos --------------------------------------------------------------------------------
    def poll_repo(self, repo: RepoConfig) -> list[str]:
        heads = ls_remote(repo.url)
        wanted = {ref: sha for ref, sha in heads.items()
                  if (ref.startswith("refs/heads/") and ref.removeprefix("refs/heads/") in repo.branches)
                  or (ref.startswith("refs/tags/") and repo.tags and re.fullmatch(repo.tags, ref[10:]))}
        key = f"shipline:poll:known:repo:{repo.name}"
        first = not self.r.exists(key)
        known = self.r.hgetall(key)
        if wanted:
            self.r.hset(key, mapping=wanted)
        if first:
            self.r.hset(key, "_", "baseline")
            return []
        events = [GitPushed(repo=repo.name, ref=ref, before=known.get(ref, ZERO_SHA), after=sha, changed_paths=(),
                            pusher="poll", delivery_id=f"poll:{ref}:{sha[:12]}", source="poll", clone_url=repo.url,
                            paths_complete=False)
                  for ref, sha in sorted(wanted.items()) if known.get(ref) != sha]
        return self._submit_all(events)

    # -- both ---------------------------------------------------------------------------------
    def _new(self, key: str, found: list[str]) -> list[str]:
        """What ``found`` adds to the known set at ``key`` (nothing on the first look)."""
        first = not self.r.exists(key)
        known = set(self.r.smembers(key))
        if found:
            self.r.sadd(key, *found)
        if first:
            self.r.sadd(key, "")  # exists from now on, even for an empty repository
            return []
        return sorted(t for t in found if t not in known)

    def _submit_all(self, events: list[Event]) -> list[str]:
        made = []
        for event in events:
            record = EventRecord(id=new_event_id(), source="poll", receiver="poll", kind=event.kind,
                                 event=event_to_dict(event), delivery_id=event.delivery_id, event_type="poll")
            record.correlation_id = record.id
            if self.config.router.ignore_reason(event) is not None:
                continue
            if self.submit(record, f"sem:{self.config.router.semantic_key(event)}") is None:
                made.append(record.id)
                log.info("poll found a change a webhook did not bring", extra={"correlation_id": record.id})
        return made


def ls_remote(url: str) -> dict[str, str]:
    """Every branch and tag of ``url`` → its commit (peeled for annotated tags)."""
    try:
        done = subprocess.run(["git", "ls-remote", "--heads", "--tags", "--", url], capture_output=True, text=True,
                              timeout=LS_REMOTE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise TransientError(f"git ls-remote of {url} timed out") from None
    if done.returncode != 0:
        raise TransientError(f"git ls-remote failed: {done.stderr.strip()[-300:]}")
    refs: dict[str, str] = {}
    for line in done.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.endswith("^{}"):
            refs[ref[:-3]] = sha  # the commit an annotated tag points at wins over the tag object
        else:
            refs.setdefault(ref, sha)
    return refs

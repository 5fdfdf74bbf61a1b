"""Bump an environment's manifests to new images: policy → minimal YAML edit → commit → push.

``bump`` is idempotent and safe to race: each attempt starts from the remote head, skips
events already recorded (``Shipline-Event`` trailers in the last ``HISTORY`` commits),
re-applies the edits from scratch (never a cherry-pick), commits and pushes without force.
It fetches only the branch it writes and never checks out: it lists the head's tree, reads only
the blobs that can carry a marker (screened once per blob id), edits them in memory and writes
the commit from objects (``handlers.gitops``), so its cost follows the files it edits, not the
size of the repository.
A rejected push retries with exponential backoff and jitter (``MAX_ATTEMPTS`` attempts,
``BASE_DELAY`` doubling up to ``MAX_DELAY``); then ``TransientError``. "Nothing to change" is
a successful result with ``commit=None``. Commits carry ``Shipline-Bot: true`` so the build
trigger can ignore them.
"""

from __future__ import annotations

import dataclasses
import posixpath
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from handlers.errors import PermanentError, TransientError
from handlers.events import short_hash
from handlers.gitops import ManifestsRepo, PushRejected, TreeEntry, parse_author
from handlers.images import same_image, short_name
from handlers.manifests import Change, ImageUpdate, Target, edit, scan_sources
from handlers.manifests.files import Source
from handlers.manifests.screen import ScreenIndex, tree_sources
from handlers.policy import choose, preferred
from handlers.settings import EnvImageConfig, EnvironmentConfig
from handlers.validate import validate_delivery_id, validate_relpath

MAX_ATTEMPTS = 8
BASE_DELAY = 0.2
MAX_DELAY = 5.0
HISTORY = 200
"""How many commits back the idempotency check looks for ``Shipline-Event`` trailers."""
SUBJECT_MAX = 72


@dataclass(frozen=True, slots=True)
class BumpResult:
    commit: str | None
    """The pushed commit, or None when there was nothing to do."""
    changes: tuple[Change, ...]
    skipped: tuple[str, ...]
    """Why images or fields were left alone (policy refusals, ambiguous markers, ...)."""
    branch: str = ""
    attempts: int = 1
    already_applied: bool = False
    """Every event was already committed (a redelivery after the push landed): nothing new to
    push, but the commit may never have been synced."""


def bump(env: EnvironmentConfig, updates: list[ImageUpdate], event_ids: list[str], state_dir: Path, *,
         attempts: int = MAX_ATTEMPTS, base_delay: float = BASE_DELAY,
         sleep: Callable[[float], None] = time.sleep) -> BumpResult:
    """Apply ``updates`` to ``env``'s manifests and push one commit (or none)."""
    for event_id in event_ids:
        validate_delivery_id(event_id, field="event_id")
    repo = ManifestsRepo(env.git.url, env.git.branch, workdir(env, state_dir))
    target = push_target(env, updates)
    for attempt in range(1, attempts + 1):
        try:
            return dataclasses.replace(_attempt(env, repo, updates, event_ids, target), attempts=attempt)
        except PushRejected:
            if attempt < attempts:
                sleep(backoff(attempt, base_delay))
    raise TransientError(f"{env.name}: push to {target} rejected {attempts} times", delay=MAX_DELAY)


def backoff(attempt: int, base: float = BASE_DELAY) -> float:
    """Exponential with equal jitter: half fixed, half random, capped at ``MAX_DELAY``."""
    ceiling = min(MAX_DELAY, base * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto


def workdir(env: EnvironmentConfig, state_dir: Path) -> Path:
    return state_dir / "manifests" / f"{env.name}-{short_hash(env.git.url + '|' + env.git.branch)}"


def push_target(env: EnvironmentConfig, updates: Sequence[ImageUpdate]) -> str:
    """``env.git.branch``, or ``push_branch`` rendered with ``{env}``, ``{image}``, ``{tag}``."""
    if env.push_branch is None:
        return env.git.branch
    values = {"env": env.name, "image": "-".join(sorted({u.image.rsplit("/", 1)[-1] for u in updates})),
              "tag": "-".join(sorted({u.tag for u in updates}))}

    def fill(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise PermanentError(f"push_branch {env.push_branch!r}: unknown placeholder {{{match[1]}}}")
        return values[match[1]]

    return re.sub(r"\{(\w*)\}", fill, env.push_branch)


def _attempt(env: EnvironmentConfig, repo: ManifestsRepo, updates: Sequence[ImageUpdate],
             event_ids: Sequence[str], target: str) -> BumpResult:
    branch, head = repo.fetch_head(prefer=target)
    done = repo.event_ids(HISTORY, environment=env.name, rev=head) if event_ids else set()
    pending = [e for e in event_ids if e not in done]
    if event_ids and not pending:
        return BumpResult(None, (), (f"events already applied on {branch}: {', '.join(event_ids)}",), branch,
                          already_applied=True)
    entries = repo.tree(head)
    check_root(env, entries)
    sources = list(marked_sources(env, repo, entries))
    targets, skipped = plan(env, updates, sources)
    edited, changes = edit({s.rel: s.text for s in sources if isinstance(s, Source)}, targets)
    if not changes:
        return BumpResult(None, (), tuple(skipped), target)
    modes = {e.rel: e.mode for e in entries}
    files = {validate_relpath(rel, field="path"): (modes[rel], text.encode()) for rel, text in edited.items()}
    sha = repo.commit_files(head, files, commit_message(env, changes, updates, pending),
                            parse_author(env.commit_author))
    repo.push(target)
    return BumpResult(sha, tuple(changes), tuple(skipped), target)


def check_root(env: EnvironmentConfig, entries: Sequence[TreeEntry]) -> None:
    """``git.path`` must be a directory of the commit (it holds at least one entry)."""
    base = env.git.path.strip("/")
    if base in ("", "."):
        return
    prefix = posixpath.normpath(base) + "/"
    if not any(e.rel.startswith(prefix) for e in entries):
        raise PermanentError(f"{env.name}: git.path {env.git.path!r} is not a directory in {env.git.url}")


def marked_sources(env: EnvironmentConfig, repo: ManifestsRepo, entries: Sequence[TreeEntry]
                   ) -> Iterator[Source | str]:
    """The files of the commit the scan must see (``handlers.manifests.screen``), in walk order."""
    index = ScreenIndex(repo.workdir / ".git" / f"shipline-screen-{short_hash(env.name)}.txt", env.markers)
    return tree_sources(entries, index, repo.read_blobs, editable(env))


def editable(env: EnvironmentConfig) -> Callable[[str], bool]:
    """The files a bump of ``env`` may touch: its manifests path and its render vars files."""
    base = env.git.path.strip("/")
    prefix = "" if base in ("", ".") else base + "/"
    vars_files = {v.strip("/") for v in env.render.vars}
    return lambda rel: rel.startswith(prefix) or rel in vars_files


def plan(env: EnvironmentConfig, updates: Sequence[ImageUpdate], sources: Iterable[Source | str]
         ) -> tuple[list[Target], list[str]]:
    """Targets to apply after each image's policy has judged the tags found in the files."""
    configured, skipped = _configured(env, updates)
    image_files = {i.image: i.files for i in env.images if i.files is not None}
    found = scan_sources(sources, [u for u, _ in configured], env.markers,
                         known_images=[i.image for i in env.images], image_files=image_files)
    skipped += found.warnings
    keep: list[Target] = []
    for update, image_config in configured:
        mine = [t for t in found.targets if t.image == update.image]
        refusal = _refusal(image_config, update, mine)
        if refusal:
            skipped.append(f"{update.image}: {refusal}")
        else:
            keep += mine
    return keep, skipped


def _configured(env: EnvironmentConfig, updates: Sequence[ImageUpdate]
                ) -> tuple[list[tuple[ImageUpdate, EnvImageConfig]], list[str]]:
    """Updates for images the environment lists, with its policy name and digest wish applied."""
    out: list[tuple[ImageUpdate, EnvImageConfig]] = []
    skipped: list[str] = []
    for update in updates:
        config = next((i for i in env.images if same_image(i.image, update.image)), None)
        if config is None:
            skipped.append(f"{update.image}: not configured for environment {env.name}")
            continue
        out.append((dataclasses.replace(update, policy_name=update.policy_name or config.policy_name,
                                        pin_digest=update.pin_digest or config.policy.digest), config))
    return _one_tag_per_image(out, skipped)


def _one_tag_per_image(configured: list[tuple[ImageUpdate, EnvImageConfig]], skipped: list[str]
                       ) -> tuple[list[tuple[ImageUpdate, EnvImageConfig]], list[str]]:
    """Several tags of one image waiting for the same commit: the one its policy prefers moves
    the files; the others are superseded (two edits of one field cannot both be made)."""
    kept: list[tuple[ImageUpdate, EnvImageConfig]] = []
    for update, config in configured:
        if any(same_image(u.image, update.image) for u, _ in kept):
            continue
        mine = [u for u, c in configured if c is config]
        best = preferred(config.policy, [u.tag for u in mine])
        chosen = next(u for u in mine if u.tag == best)
        kept.append((chosen, config))
        skipped += [f"{u.image}: {u.tag} superseded by {best} in the same commit" for u in mine if u.tag != best]
    return kept, skipped


def _refusal(config: EnvImageConfig, update: ImageUpdate, targets: Sequence[Target]) -> str:
    """Empty when every field may move to ``update.tag``; else the first refusal's reason."""
    currents = sorted({t.current_tag for t in targets if t.current_tag is not None}) or [None]
    for current in currents:
        decision = choose(config.policy, update.tag, current)
        if not decision.accept and not decision.already:
            return decision.reason
    return ""


def commit_message(env: EnvironmentConfig, changes: Sequence[Change], updates: Sequence[ImageUpdate],
                   event_ids: Sequence[str]) -> str:
    """Subject, one line per change, then trailers (``git interpret-trailers`` format)."""
    digests = {u.image: u.digest for u in updates}
    moved = sorted({(short_name(c.image), next(u.tag for u in updates if u.image == c.image)) for c in changes})
    subject = f"chore({env.name}): bump " + ", ".join(f"{name} to {tag}" for name, tag in moved)
    if len(subject) > SUBJECT_MAX:
        subject = f"chore({env.name}): bump {len(moved)} images"
    body = [f"- {c.file}:{c.line}: {c.old} → {c.new} ({c.image}"
            f"{'@' + digests[c.image] if digests.get(c.image) else ''})" for c in changes]
    trailers = [f"Shipline-Event: {e}" for e in event_ids]
    trailers += [f"Shipline-Environment: {env.name}", "Shipline-Bot: true"]
    return "\n".join([subject, "", *body, "", *trailers]) + "\n"


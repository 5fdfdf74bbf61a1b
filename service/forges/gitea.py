"""A small, typed client of Gitea's pull-request API (also Forgejo's, which kept it).

What PR mode needs and nothing more: open a pull request from a branch, find the open one for a
(head, base) pair, change its title/body/state, list, and merge. Token auth
(``Authorization: token ...``), Shipline's timeouts, and every failure wrapped once: a
``ForgeUnavailable`` (connection, timeout, 5xx, 409 "head/base moved", 405 "try again later" while
Gitea still checks mergeability) is worth retrying; a ``ForgeRefused`` (bad token, no permission,
unknown repo, invalid request, already merged) is not. Messages name the call, never the token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from handlers.errors import PermanentError, TransientError

TIMEOUT = httpx.Timeout(10.0, connect=2.0)
PAGE = 50
MergeStyle = Literal["merge", "rebase", "rebase-merge", "squash", "fast-forward-only"]


class ForgeUnavailable(TransientError):
    """The forge could not do it now; retrying may help."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ForgeRefused(PermanentError):
    """The forge said no for a reason retrying will not change."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PullRequest:
    number: int
    title: str
    body: str
    state: Literal["open", "closed"]
    head: str
    """The head branch name."""
    head_sha: str
    base: str
    merged: bool
    merge_commit_sha: str | None
    mergeable: bool
    html_url: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> PullRequest:
        return cls(number=int(data["number"]), title=data["title"], body=data.get("body") or "",
                   state=data["state"], head=data["head"]["ref"], head_sha=data["head"]["sha"],
                   base=data["base"]["ref"], merged=bool(data.get("merged")),
                   merge_commit_sha=data.get("merge_commit_sha") or None,
                   mergeable=bool(data.get("mergeable")), html_url=data.get("html_url") or "")


class GiteaClient:
    """One Gitea (``api_url`` like ``https://git.example.com/api/v1``) and one token.

    ``repo`` arguments are ``owner/name``. Pass ``client`` to share a connection pool; otherwise
    the client owns one (close it, or use ``with``)."""

    def __init__(self, api_url: str, token: str, *, client: httpx.Client | None = None) -> None:
        self._base = api_url.rstrip("/")
        self._http = client or httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        self._own = client is None
        self._auth = {"Authorization": f"token {token}"}

    def __enter__(self) -> GiteaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._http.close()

    # -- pull requests -------------------------------------------------------------------
    def create_pull(self, repo: str, *, head: str, base: str, title: str, body: str = "") -> PullRequest:
        """Open it. Gitea registers a pushed branch asynchronously, so right after the push of
        ``head`` this can answer 404 for a repo that exists: that is ``ForgeUnavailable``."""
        try:
            data = self._call("POST", f"{_repo(repo)}/pulls", json={"head": head, "base": base, "title": title,
                                                                     "body": body})
        except ForgeRefused as exc:
            if exc.status == 404 and self._call("GET", _repo(repo)):
                raise ForgeUnavailable(f"{exc} (branch {head!r} or {base!r} not known to Gitea yet)",
                                       status=404) from None
            raise
        return PullRequest.from_api(data)

    def get_pull(self, repo: str, number: int) -> PullRequest:
        return PullRequest.from_api(self._call("GET", f"{_repo(repo)}/pulls/{number}"))

    def update_pull(self, repo: str, number: int, *, title: str | None = None, body: str | None = None,
                    state: Literal["open", "closed"] | None = None) -> PullRequest:
        """Change only what is given (``state="closed"`` closes without merging)."""
        changes = {k: v for k, v in (("title", title), ("body", body), ("state", state)) if v is not None}
        return PullRequest.from_api(self._call("PATCH", f"{_repo(repo)}/pulls/{number}", json=changes))

    def list_pulls(self, repo: str, *, state: Literal["open", "closed", "all"] = "open",
                   base: str | None = None) -> list[PullRequest]:
        return list(self._pulls(repo, state, base))

    def find_open_pull(self, repo: str, *, head: str, base: str) -> PullRequest | None:
        """The open pull request from branch ``head`` into ``base``, if any (the one to update
        instead of opening a second)."""
        return next((p for p in self._pulls(repo, "open", base) if p.head == head), None)

    def merge_pull(self, repo: str, number: int, *, style: MergeStyle = "merge", head_sha: str | None = None,
                   title: str | None = None, message: str | None = None, delete_branch: bool = False) -> None:
        """Merge it. With ``head_sha``, Gitea refuses (409, ``ForgeUnavailable``) if the head has
        moved since: what was reviewed is what gets merged."""
        form: dict[str, Any] = {"Do": style, "delete_branch_after_merge": delete_branch}
        for key, value in (("head_commit_id", head_sha), ("merge_title_field", title),
                           ("merge_message_field", message)):
            if value is not None:
                form[key] = value
        self._call("POST", f"{_repo(repo)}/pulls/{number}/merge", json=form)

    def _pulls(self, repo: str, state: str, base: str | None) -> Iterator[PullRequest]:
        params: dict[str, Any] = {"state": state, "limit": PAGE}
        if base is not None:
            params["base_branch"] = base
        page = 1
        while True:
            batch = self._call("GET", f"{_repo(repo)}/pulls", params={**params, "page": page})
            yield from (PullRequest.from_api(p) for p in batch)
            if len(batch) < PAGE:
                return
            page += 1

    # -- plumbing ------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return forge_call(self._http, "gitea", method, self._base, path, headers=self._auth,
                          transient=(408, 409, 429), transient_phrase="try again later", **kwargs)


def _repo(repo: str) -> str:
    owner, sep, name = repo.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise ValueError(f"repository {repo!r} is not owner/name")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def forge_call(http: httpx.Client, forge: str, method: str, base: str, path: str, *, headers: dict[str, str],
               transient: tuple[int, ...], transient_phrase: str | None = None, **kwargs: Any) -> Any:
    """One API call: its JSON answer (None when empty), or ``ForgeUnavailable`` (connection,
    timeout, 5xx, a ``transient`` status or message) or ``ForgeRefused``, naming the call, never
    the headers."""
    what = f"{forge} {method} {path}"
    try:
        answer = http.request(method, base + path, headers=headers, **kwargs)
    except httpx.HTTPError as exc:  # its message names the URL only, never the headers
        raise ForgeUnavailable(f"{what}: {type(exc).__name__}") from None
    if answer.status_code < 300:
        return answer.json() if answer.content else None
    reason = _message(answer)
    if answer.status_code >= 500 or answer.status_code in transient or (
            transient_phrase is not None and transient_phrase in reason):
        raise ForgeUnavailable(f"{what}: HTTP {answer.status_code} {reason}", status=answer.status_code)
    raise ForgeRefused(f"{what}: HTTP {answer.status_code} {reason}", status=answer.status_code)


def _message(answer: httpx.Response) -> str:
    try:
        data = answer.json()
    except ValueError:
        return answer.text[:200]
    return str(data.get("message") or data)[:200] if isinstance(data, dict) else str(data)[:200]

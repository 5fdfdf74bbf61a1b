"""GitHub's pull-request API, the calls PR mode needs, in the shape of ``service.forges.gitea``.

``Authorization: Bearer <token>``; a 422 "already exists" on create means the open one is found
and updated instead. Failures are wrapped once, as the Gitea client does (retry or not).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from service.forges.gitea import TIMEOUT, PullRequest, forge_call


class GitHubClient:
    def __init__(self, api_url: str, token: str, *, client: httpx.Client | None = None) -> None:
        self._base = api_url.rstrip("/")
        self._http = client or httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        self._own = client is None
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                         "X-GitHub-Api-Version": "2022-11-28"}

    def close(self) -> None:
        if self._own:
            self._http.close()

    def find_open_pull(self, repo: str, *, head: str, base: str) -> PullRequest | None:
        owner = repo.split("/", 1)[0]
        found = self._call("GET", f"{_repo(repo)}/pulls", params={"state": "open", "head": f"{owner}:{head}",
                                                                  "base": base})
        return _pull(found[0]) if found else None

    def create_pull(self, repo: str, *, head: str, base: str, title: str, body: str = "") -> PullRequest:
        return _pull(self._call("POST", f"{_repo(repo)}/pulls", json={"title": title, "head": head, "base": base,
                                                                      "body": body}))

    def update_pull(self, repo: str, number: int, *, title: str | None = None, body: str | None = None) -> PullRequest:
        changes = {k: v for k, v in (("title", title), ("body", body)) if v is not None}
        return _pull(self._call("PATCH", f"{_repo(repo)}/pulls/{number}", json=changes))

    def merge_pull(self, repo: str, number: int, *, head_sha: str | None = None, delete_branch: bool = False) -> None:
        head = _pull(self._call("GET", f"{_repo(repo)}/pulls/{number}")).head if delete_branch else ""
        body: dict[str, Any] = {"merge_method": "merge", **({"sha": head_sha} if head_sha else {})}
        self._call("PUT", f"{_repo(repo)}/pulls/{number}/merge", json=body)
        if head:
            self._call("DELETE", f"{_repo(repo)}/git/refs/heads/{quote(head, safe='/')}")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return forge_call(self._http, "github", method, self._base, path, headers=self._headers,
                          transient=(405, 409, 429), **kwargs)  # 405: not mergeable yet


def _repo(repo: str) -> str:
    owner, sep, name = repo.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise ValueError(f"repository {repo!r} is not owner/name")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def _pull(data: dict[str, Any]) -> PullRequest:
    return PullRequest(number=int(data["number"]), title=data.get("title", ""), body=data.get("body") or "",
                       state="open" if data.get("state") == "open" else "closed", head=data["head"]["ref"],
                       head_sha=data["head"].get("sha", ""), base=data["base"]["ref"], merged=bool(data.get("merged")),
                       merge_commit_sha=data.get("merge_commit_sha") or None,
                       mergeable=bool(data.get("mergeable")), html_url=data.get("html_url") or "")

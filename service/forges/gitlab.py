"""GitLab's merge-request API, the calls PR mode needs, in the shape of ``service.forges.gitea``.

``PRIVATE-TOKEN``; the project is its id or its ``group/project`` path (URL-encoded). Auto-merge
is "merge when the pipeline succeeds" (GitLab merges at once when there is no pipeline).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from service.forges.gitea import TIMEOUT, PullRequest, forge_call


class GitLabClient:
    def __init__(self, api_url: str, token: str, *, client: httpx.Client | None = None) -> None:
        self._base = api_url.rstrip("/")
        self._http = client or httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        self._own = client is None
        self._headers = {"PRIVATE-TOKEN": token}

    def close(self) -> None:
        if self._own:
            self._http.close()

    def find_open_pull(self, repo: str, *, head: str, base: str) -> PullRequest | None:
        found = self._call("GET", f"{_project(repo)}/merge_requests",
                           params={"state": "opened", "source_branch": head, "target_branch": base})
        return _pull(found[0]) if found else None

    def create_pull(self, repo: str, *, head: str, base: str, title: str, body: str = "") -> PullRequest:
        return _pull(self._call("POST", f"{_project(repo)}/merge_requests", json={
            "source_branch": head, "target_branch": base, "title": title, "description": body}))

    def update_pull(self, repo: str, number: int, *, title: str | None = None, body: str | None = None) -> PullRequest:
        changes = {k: v for k, v in (("title", title), ("description", body)) if v is not None}
        return _pull(self._call("PUT", f"{_project(repo)}/merge_requests/{number}", json=changes))

    def merge_pull(self, repo: str, number: int, *, head_sha: str | None = None, delete_branch: bool = False) -> None:
        body: dict[str, Any] = {"merge_when_pipeline_succeeds": True, "should_remove_source_branch": delete_branch,
                                **({"sha": head_sha} if head_sha else {})}
        self._call("PUT", f"{_project(repo)}/merge_requests/{number}/merge", json=body)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return forge_call(self._http, "gitlab", method, self._base, path, headers=self._headers,
                          transient=(405, 406, 409, 422, 429), **kwargs)  # not mergeable yet


def _project(repo: str) -> str:
    if not repo or repo.startswith("/") or ".." in repo.split("/"):
        raise ValueError(f"project {repo!r} is not an id or group/project path")
    return f"/projects/{quote(repo, safe='')}"


def _pull(data: dict[str, Any]) -> PullRequest:
    return PullRequest(number=int(data["iid"]), title=data.get("title", ""), body=data.get("description") or "",
                       state="open" if data.get("state") == "opened" else "closed", head=data["source_branch"],
                       head_sha=data.get("sha") or "", base=data["target_branch"], merged=data.get("state") == "merged",
                       merge_commit_sha=data.get("merge_commit_sha") or None,
                       mergeable=data.get("merge_status") == "can_be_merged", html_url=data.get("web_url") or "")

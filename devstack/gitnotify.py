"""post-receive hook of the plain git server: tell Shipline about the push, as Gitea would.

An imitation, kept only for the chaos world's app repo (which needs a bare repo on disk); the demo,
the end-to-end and dashboard tests and the lead-time bench get Gitea's own webhooks.

Reads ``<old> <new> <ref>`` lines on stdin inside a bare repo, builds a Gitea-style push payload
(with the changed paths), signs it (``X-Gitea-Signature``: hex HMAC-SHA256 of the body) and POSTs
it. Settings come from ``<repo>/shipline-hook.json``: ``{"url": ..., "secret_file": ..., "name": ...}``.
A notification failure never fails the push; it is printed to the pusher.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

ZERO = "0" * 40


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def _changed(old: str, new: str) -> list[str]:
    if new == ZERO:
        return []
    if old == ZERO:
        return _git("ls-tree", "-r", "--name-only", new).splitlines()
    return _git("diff", "--name-only", old, new).splitlines()


def payload(name: str, clone_url: str, old: str, new: str, ref: str) -> dict:
    paths = _changed(old, new)
    commits = []
    if new != ZERO:
        commits.append({"id": new, "message": _git("log", "-1", "--format=%B", new).strip(),
                        "added": [], "removed": [], "modified": paths})
    return {
        "ref": ref, "before": old, "after": new, "compare_url": "", "commits": commits,
        "total_commits": len(commits), "head_commit": commits[0] if commits else None,
        "repository": {"full_name": f"local/{name}", "name": name, "clone_url": clone_url},
        "pusher": {"login": "local", "username": "local"}, "sender": {"login": "local"},
    }


def main() -> None:
    settings = json.loads(Path("shipline-hook.json").read_text())
    secret = Path(settings["secret_file"]).read_text().strip().encode()
    for line in sys.stdin:
        old, new, ref = line.split()
        body = json.dumps(payload(settings["name"], settings["clone_url"], old, new, ref)).encode()
        headers = {
            "Content-Type": "application/json", "X-Gitea-Event": "push",
            "X-Gitea-Delivery": str(uuid.uuid4()),
            "X-Gitea-Signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),
        }
        try:
            answer = httpx.post(settings["url"], content=body, headers=headers, timeout=5)
            print(f"shipline: {ref} -> {answer.status_code} {answer.text[:200]}")
        except httpx.HTTPError as exc:
            print(f"shipline: webhook for {ref} failed: {exc}")


if __name__ == "__main__":
    main()

"""The chaos table's duplicate counters can count: each is fed a duplicate it must see (and the
look-alikes it must not), so a 0 in the table is a measurement, not a constant. No stack needed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.chaos import evidence

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def audit_line(name: str, *, digest: str = "", manager: str = "shipline", code: int = 200, dry_run: bool = False,
               subresource: str = "") -> str:
    uri = f"/api/v1/namespaces/ns/configmaps/{name}?fieldManager={manager}" + ("&dryRun=All" if dry_run else "")
    ref = {"resource": "configmaps", "namespace": "ns", "name": name}
    if subresource:
        ref["subresource"] = subresource
    meta = {"annotations": {evidence.DIGEST_ANNOTATION: digest}} if digest else {}
    return json.dumps({"verb": "patch", "requestURI": uri, "objectRef": ref, "responseStatus": {"code": code},
                       "requestObject": {"metadata": meta}}) + "\n"


def test_an_object_applied_twice_with_one_digest_is_a_duplicate_unless_someone_wrote_it_between(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    lines = [
        audit_line("a", digest="d1"),
        audit_line("a", digest="d1", dry_run=True),  # a dry run is not a write
        audit_line("a", digest="d1", code=409),  # nor a refused one
        audit_line("inventory"),  # Shipline's bookkeeping: no digest
        audit_line("a", digest="d1"),  # duplicate 1
        audit_line("a", manager="kubectl-edit"),  # someone else's write: drift
        audit_line("a", digest="d1"),  # the drift repaired: not a duplicate
        audit_line("a", digest="d2"),  # a new manifest
        audit_line("a", digest="d1"),  # back to the old one (a rollback): not a duplicate
        audit_line("b", digest="d1"),
        audit_line("b", digest="d1", subresource="status"),  # status: not a write of the object
        audit_line("b", digest="d1"),  # duplicate 2
    ]
    log.write_text("".join(lines) + '{"truncated')
    every = evidence.writes(log)
    assert len(evidence.applies(log)) == 7
    assert [(w.key[2], w.digest) for w in evidence.repeated_applies(every, since=0)] == [("a", "d1"), ("b", "d1")]
    first_b = sum(len(line) for line in lines[:10])
    assert len(evidence.repeated_applies(every, since=first_b)) == 1  # only what came after a baseline


def test_a_second_commit_with_the_same_event_trailer_is_counted(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    for n, (event, env) in enumerate([("e1", "stg"), ("e2", "stg"), ("e1", "stg"), ("e1", "prod")]):
        (repo / "f").write_text(str(n))
        subprocess.run(["git", "-C", str(repo), "add", "f"], check=True)
        message = f"bump {n}\n\n{evidence.TRAILER_EVENT}: {event}\n{evidence.TRAILER_ENVIRONMENT}: {env}\n"
        subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", message], check=True)
    pairs = evidence.commits_per_event(repo)
    assert pairs == {("e1", "stg"): 2, ("e2", "stg"): 1, ("e1", "prod"): 1}


def test_a_tag_that_points_to_a_second_digest_is_counted(tmp_path: Path) -> None:
    def tag(repo: str, name: str, digest: str) -> None:
        path = tmp_path / "docker/registry/v2/repositories" / repo / "_manifests/tags" / name / "index/sha256" / digest
        path.mkdir(parents=True)

    tag("r", "1.0.0", "aaa")
    baseline = evidence.Baseline(0.0, 0, evidence.tag_digests(tmp_path, ["r"]))
    tag("r", "1.0.0", "bbb")  # the existing tag pushed again with other content
    tag("r", "2.0.0", "ccc")  # a new tag: its first digest is not a duplicate
    tag("r", "3.0.0", "ddd")
    tag("r", "3.0.0", "eee")  # a new tag pushed twice with different content
    found = evidence.duplicates(baseline, bare=_empty_repo(tmp_path), events=set(), audit_log=tmp_path / "none",
                                registry_data=tmp_path, repositories=["r"])
    assert (found.registry, found.git, found.cluster) == (2, 0, 0)


def _empty_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "root"], check=True)
    return repo

"""The one-request fetch (protocol v2 over smart HTTP) on the real HTTP git server, and its parser."""

from __future__ import annotations

import logging
import os
import re
import ssl
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import handlers.build.mirror as mirror_module
from devstack.kubepki import ensure_pki
from devstack.stack import Stack
from handlers.build.mirror import GIT_ENV, Mirror, Want
from handlers.build.packfetch import (
    Fetch,
    Outcome,
    _pack_data,
    _packets,
    _refs,
    _Refused,
    fetch_objects,
    list_refs,
    pkt_line,
)
from handlers.build.tags import describe
from tests.handlers.build.conftest import GIT, AppRepo, git, mirror


def requests_for(app: AppRepo) -> list[str]:
    """What the git server logged for this test's repo, in order: ``GET /app-….git/info/refs?…``."""
    lines = app.stack.git.daemon.log_file.read_text(errors="replace").splitlines()
    return [m.group(1) for line in lines if (m := re.search(rf'"((?:GET|POST) /app-{app.uid}\.git/\S*)', line))]


def test_the_usual_push_is_fetched_in_one_request_into_its_ref(app: AppRepo) -> None:
    m = mirror(app)
    sha = app.commit({"frontend/x": "one request"})
    pushed = app.push("main")
    seen = len(requests_for(app))
    fetched = mirror(app, Want(pushed.after, pushed.ref))
    assert requests_for(app)[seen:] == [f"POST /app-{app.uid}.git/git-upload-pack"], "no capability GET, no second try"
    assert fetched.run("rev-parse", "refs/heads/main") == sha
    assert not (m.path / "refs" / "heads" / "main.lock").exists()
    assert (m.path / "objects" / sha[:2] / sha[2:]).is_file(), "a small pack is unpacked, as git fetch does"
    m.run("fsck", "--connectivity-only", "--no-dangling")


def test_a_describe_build_lists_the_tags_beside_the_fetch_and_fetches_new_ones(app: AppRepo) -> None:
    """New, moved and deleted tags end as the remote has them (as ``git fetch --prune`` left them)."""
    m = mirror(app)
    app.push_tag("1.0.0", annotated=True)
    app.push_tag("0.9.0")
    app.commit({"frontend/x": "after 1.0.0"})
    app.push("main")
    m.fetch()
    git(app.work, "push", "-q", "origin", ":refs/tags/0.9.0")
    git(app.work, "tag", "-f", "-a", "-m", "moved", "1.0.0", "HEAD~1")
    git(app.work, "push", "-q", "--force", "origin", "refs/tags/1.0.0")
    app.push_tag("1.1.0", annotated=True)
    sha = app.commit({"frontend/x": "after 1.1.0"})
    pushed = app.push("main")
    seen = len(requests_for(app))
    fetched = mirror(app, Want(pushed.after, pushed.ref, tags=True))
    assert requests_for(app)[seen:] == [f"POST /app-{app.uid}.git/git-upload-pack"] * 3, \
        "ls-refs beside the commit's fetch, then one fetch for the tags' objects"
    assert fetched.run("rev-parse", "refs/heads/main") == sha
    remote = git(app.work, "ls-remote", "--tags", "origin", "refs/tags/*[0-9]")
    assert fetched.run("for-each-ref", "--format=%(objectname)\t%(refname)", "refs/tags/") == remote
    assert describe(fetched, sha) == f"1.1.0-1-g{sha[:7]}"
    again = len(requests_for(app))
    mirror(app, Want(pushed.after, pushed.ref, tags=True))
    assert requests_for(app)[again:] == [f"POST /app-{app.uid}.git/git-upload-pack"], "nothing new: ls-refs alone"
    usual = app.commit({"frontend/x": "no tag changed"})
    pushed = app.push("main")
    again = len(requests_for(app))
    assert describe(mirror(app, Want(pushed.after, pushed.ref, tags=True)), usual) == f"1.1.0-2-g{usual[:7]}"
    assert requests_for(app)[again:] == [f"POST /app-{app.uid}.git/git-upload-pack"] * 2, "ls-refs beside the fetch"
    release = app.push_tag("1.2.0", annotated=True)
    again = len(requests_for(app))
    assert describe(mirror(app, Want(release.after, release.ref, tags=True)), release.after) == "1.2.0"
    assert requests_for(app)[again:] == [f"POST /app-{app.uid}.git/git-upload-pack"] * 2, \
        "a tag push: its tag object came with the fetch, so no second one"
    m.run("fsck", "--connectivity-only", "--no-dangling")


def test_the_tags_are_listed_by_ls_refs_or_why_not(app: AppRepo) -> None:
    tagged = app.push_tag("2.0.0")
    listed, refs = list_refs(app.url, "refs/tags/")
    assert listed.outcome is Outcome.FETCHED and refs == {"refs/tags/2.0.0": tagged.after}
    missing, refs = list_refs(app.url.replace(f"app-{app.uid}", f"gone-{app.uid}"), "refs/tags/")
    assert missing.outcome is Outcome.UNSUPPORTED and missing.why.startswith("HTTP 404") and refs == {}
    unreachable, _ = list_refs("http://user:s3cret@127.0.0.1:1/app.git", "refs/tags/")
    assert unreachable.outcome is Outcome.UNREACHABLE and "s3cret" not in unreachable.why
    assert list_refs("ssh://git@127.0.0.1/app.git", "refs/tags/")[0].outcome is Outcome.UNSUPPORTED


def test_tags_not_listed_in_one_request_are_fetched_by_git(app: AppRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server without protocol v2 (stood in for by a refused ``ls-refs``): ``git fetch --prune``."""
    m = mirror(app)
    app.push_tag("3.0.0")
    sha = app.commit({"frontend/x": "after 3.0.0"})
    pushed = app.push("main")
    monkeypatch.setattr(mirror_module, "list_refs", lambda url, prefix: (Fetch(Outcome.UNSUPPORTED, "v0 only"), {}))
    seen = len(requests_for(app))
    fetched = mirror(app, Want(pushed.after, pushed.ref, tags=True))
    assert f"GET /app-{app.uid}.git/info/refs?service=git-upload-pack" in requests_for(app)[seen:], "git fetch"
    assert describe(fetched, sha) == f"3.0.0-1-g{sha[:7]}"
    assert m.run("rev-parse", "refs/heads/main") == sha


@pytest.mark.parametrize(("answer", "why"), [
    (pkt_line(b"ERR not allowed\n") + b"0000", "the server refused: not allowed"),
    (pkt_line(b"zz refs/tags/1\n") + b"0000", "not an ls-refs line"),
    (pkt_line(b"%s refs/heads/main\n" % (b"a" * 40)) + b"0000", "not an ls-refs line"),
    (pkt_line(b"%s refs/tags/1\n" % (b"a" * 40)), "the ref list was not finished"),
])
def test_an_ls_refs_answer_that_is_not_a_ref_list_is_refused(answer: bytes, why: str) -> None:
    with pytest.raises(_Refused, match=why):
        _refs(_packets([answer]), "refs/tags/")


def test_an_ls_refs_answer_is_read_with_its_peeled_ids_ignored() -> None:
    a, b = "a" * 40, "b" * 40
    answer = pkt_line(f"{a} refs/tags/1.0.0 peeled:{b}\n".encode()) + pkt_line(f"{b} refs/tags/2\n".encode()) + b"0000"
    assert _refs(_packets([answer]), "refs/tags/") == {"refs/tags/1.0.0": a, "refs/tags/2": b}


def test_a_pack_missing_what_it_leans_on_writes_no_commit_and_moves_no_ref(app: AppRepo) -> None:
    m = mirror(app)
    seed = app.pushed["refs/heads/main"]
    between = app.commit({"frontend/x": "not in the mirror"})
    app.push("main")
    wanted = app.commit({"frontend/y": "wanted"})
    app.push("main")
    lied = fetch_objects(m.path, app.url, wanted, [between], unpack_limit=100, env=GIT_ENV)
    assert lied.outcome is Outcome.UNSUPPORTED and "unpack-objects refused the pack" in lied.why
    assert not m.has_commit(wanted) and m.run("rev-parse", "refs/heads/main") == seed
    told = fetch_objects(m.path, app.url, wanted, [seed], unpack_limit=100, env=GIT_ENV)
    assert told.outcome is Outcome.FETCHED and m.has_commit(wanted)
    assert m.run("rev-parse", "refs/heads/main") == seed, "moving the ref is the mirror's"
    m.run("fsck", "--connectivity-only", "--no-dangling")


def test_many_objects_are_indexed_into_a_pack(app: AppRepo) -> None:
    m = mirror(app)
    seed = app.pushed["refs/heads/main"]
    sha = app.commit({f"backend/f{n}": f"{n}\n" for n in range(12)})
    app.push("main")
    packs = set((m.path / "objects" / "pack").glob("*.pack"))
    got = fetch_objects(m.path, app.url, sha, [seed], unpack_limit=5, env=GIT_ENV)
    assert got.outcome is Outcome.FETCHED
    assert len(set((m.path / "objects" / "pack").glob("*.pack")) - packs) == 1
    assert not list((m.path / "objects" / "pack").glob("*.keep")) and m.has_commit(sha)
    m.run("fsck", "--connectivity-only", "--no-dangling")


def test_a_pack_without_the_wanted_commit_moves_no_ref(app: AppRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    m = mirror(app)
    seed = app.pushed["refs/heads/main"]
    sha = app.commit({"frontend/x": "offered as had"})
    pushed = app.push("main")
    monkeypatch.setattr(Mirror, "_haves", lambda self, ref: [sha, seed])  # a have the mirror lacks: no pack
    assert m._fetch_in_one_request(sha, "refs/heads/main").why == f"the pack did not hold {sha[:12]}"
    assert m.run("rev-parse", "refs/heads/main") == seed
    assert mirror(app, Want(pushed.after, pushed.ref)).run("rev-parse", "refs/heads/main") == sha, "git fetch got it"


def test_what_is_not_a_v2_pack_is_left_to_git_fetch(app: AppRepo) -> None:
    m = mirror(app)
    sha = app.commit({"frontend/x": "elsewhere"})
    app.push("main")
    missing = app.url.replace(f"app-{app.uid}", f"gone-{app.uid}")
    refused = fetch_objects(m.path, missing, sha, [], unpack_limit=100, env=GIT_ENV)
    assert refused.outcome is Outcome.UNSUPPORTED and refused.why.startswith("HTTP 404")
    unknown = fetch_objects(m.path, app.url, "1" * 40, [], unpack_limit=100, env=GIT_ENV)
    assert unknown.outcome is Outcome.UNSUPPORTED and "the server refused" in unknown.why
    ssh = fetch_objects(m.path, "ssh://git@127.0.0.1/app.git", sha, [], unpack_limit=100,
                       env=GIT_ENV)
    assert ssh.outcome is Outcome.UNSUPPORTED
    assert not m.has_commit(sha)
    assert pack_storing_children() == [], "the unpack-objects started before the request is gone"


def test_no_server_is_unreachable_and_the_reason_names_no_url(app: AppRepo) -> None:
    m = mirror(app)
    gone = fetch_objects(m.path, "http://user:s3cret@127.0.0.1:1/app.git", "2" * 40, [],
                        unpack_limit=100, env=GIT_ENV)
    assert gone.outcome is Outcome.UNREACHABLE and "s3cret" not in gone.why
    assert pack_storing_children() == [], "the unpack-objects started before the request is gone"


def pack_storing_children() -> list[str]:
    """This process's pack-storing git children, and any zombie (a child killed but never waited for)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and ("unpack-objects" in command or "index-pack" in command
                                               or fields[0] == "Z"):
            found.append(f"{stat.parent.name} {fields[0]} {command}")
    return found


def test_a_new_branch_offers_the_default_branch_so_only_its_commit_comes(app: AppRepo, tmp_path: Path) -> None:
    m = mirror(app)
    git(app.work, "checkout", "-qb", "feature")
    sha = app.commit({"frontend/x": "branch"})
    pushed = app.push("feature")
    m.run("tag", "tree", m.run("rev-parse", "refs/heads/main^{tree}"))  # other refs are not offered
    assert m._haves("refs/heads/feature") == [app.pushed["refs/heads/main"]]
    mirror(app, Want(pushed.after, pushed.ref))
    assert m.run("rev-parse", "refs/heads/feature") == sha
    assert m.run("count-objects").startswith("4 objects"), "commit, root tree, frontend tree, blob: nothing else"


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 3, 7, 4096])
def test_packets_are_read_across_any_chunking(size: int) -> None:
    stream = b"".join(map(pkt_line, [b"packfile\n", b"\x02progress", b"\x01PACK-1", b"\x01-2"])) + b"0000"
    assert b"".join(_pack_data(_packets(chunks(stream, size)))) == b"PACK-1-2"


@pytest.mark.parametrize(("stream", "why"), [
    (pkt_line(b"ERR upload-pack: not our ref 1111\n"), "the server refused: upload-pack: not our ref 1111"),
    (pkt_line(b"packfile\n") + pkt_line(b"\x01PACK") + pkt_line(b"\x03disk full"),
     "failed while sending the pack: disk full"),
    (pkt_line(b"packfile\n") + pkt_line(b"\x01PACK"), "the pack was not finished"),
    (pkt_line(b"acknowledgments\n") + b"0000", "no packfile section"),
    (b"<html>", "not a pkt-line"),
    (pkt_line(b"packfile\n")[:-2], "the answer ended inside a packet"),
])
def test_what_is_not_a_whole_pack_is_refused_with_a_reason(stream: bytes, why: str) -> None:
    with pytest.raises(_Refused, match=re.escape(why)):
        b"".join(_pack_data(_packets([stream])))


def test_an_annotated_tag_is_fetched_by_its_tag_object(app: AppRepo) -> None:
    mirror(app)
    commit = app.commit({"frontend/x": "released"})
    tag = app.push_tag("6.6.6", annotated=True)
    seen = len(requests_for(app))
    m = mirror(app, Want(tag.after, tag.ref))
    assert requests_for(app)[seen:] == [f"POST /app-{app.uid}.git/git-upload-pack"]
    assert m.run("rev-parse", "refs/tags/6.6.6") == tag.after != commit
    assert m.run("rev-parse", "refs/tags/6.6.6^{commit}") == commit


def test_a_private_gitea_repo_is_fetched_in_one_request_with_the_url_credentials(
        stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gitea, name = stack.gitea, f"private-{uuid.uuid4().hex[:10]}"
    url = gitea.api("POST", "/user/repos", json={"name": name, "default_branch": "main", "private": True})["clone_url"]
    env = {**os.environ, **gitea.git_env()}
    work = tmp_path / "work"
    subprocess.run([*GIT, "clone", "-q", url, str(work)], check=True, capture_output=True, env=env)

    def pushed(text: str) -> str:
        (work / "x").write_text(text)
        for argv in (["add", "x"], ["commit", "-qm", text], ["push", "-q", "origin", "HEAD:main"]):
            subprocess.run([*GIT, "-C", str(work), *argv], check=True, capture_output=True, env=env)
        return git(work, "rev-parse", "HEAD")

    pushed("one")
    with_token = url.replace("://", f"://{gitea.admin}:{gitea.token}@", 1)
    m = Mirror.open(state_dir=stack.state_dir, name=name, url=with_token)
    sha = pushed("two")
    anonymous = fetch_objects(m.path, url, sha, [], unpack_limit=100, env=GIT_ENV)
    assert anonymous.outcome is Outcome.UNSUPPORTED and anonymous.why.startswith("HTTP 401")
    with caplog.at_level(logging.INFO, logger="shipline.build"):
        got = Mirror.open(state_dir=stack.state_dir, name=name, url=with_token, want=Want(sha, "refs/heads/main"))
    assert got.run("rev-parse", "refs/heads/main") == sha
    for argv in (["tag", "-a", "-m", "release", "4.0.0"], ["push", "-q", "origin", "refs/tags/4.0.0"]):
        subprocess.run([*GIT, "-C", str(work), *argv], check=True, capture_output=True, env=env)
    after = pushed("three")
    with caplog.at_level(logging.INFO, logger="shipline.build"):
        tagged = Mirror.open(state_dir=stack.state_dir, name=name, url=with_token,
                             want=Want(after, "refs/heads/main", tags=True))
    assert describe(tagged, after) == f"4.0.0-1-g{after[:7]}", "Gitea lists the tags by ls-refs"
    assert not [r for r in caplog.records if "git fetch instead" in r.getMessage()], "no fallback"
    assert gitea.token not in caplog.text


def test_a_certificate_this_client_does_not_trust_is_left_to_git_fetch(tmp_path: Path) -> None:
    """git may be told to trust it (``http.sslCAInfo``); this client knows only the system's CAs."""
    pki = ensure_pki(tmp_path / "pki")  # a dev CA no system trusts
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.admin_crt, pki.admin_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        got = fetch_objects(tmp_path, f"https://127.0.0.1:{server.server_port}/app.git", "3" * 40, [],
                            unpack_limit=100, env={})
    finally:
        server.shutdown()
        server.server_close()
    assert got.outcome is Outcome.UNSUPPORTED and got.why.startswith("TLS refused")

"""One commit into a mirror in one HTTP request: git's protocol v2 ``fetch`` over smart HTTP.

``git fetch origin +<sha>:<ref>`` took twice what this module takes for the same pushes (34 against
16 ms side by side here), most of it not the transfer: git starts its ``git-remote-http`` helper,
asks the server for its capabilities (one request), fetches (a second), unpacks in a child process
and checks connectivity in another. A push's build knows
what it wants, so this module sends the one ``fetch`` command straight away (``want <sha>``, what
the mirror holds as ``have``, ``done``) on a connection kept across builds, streams the pack into
``git unpack-objects --strict`` (``git index-pack --strict --fix-thin`` past ``fetch.unpackLimit``,
as git itself chooses); the mirror then moves the ref (``Mirror``, by GitPython: no process).

``--strict`` is the connectivity check: the objects are written only once everything they link to
is in the pack or already here, so a ``have`` the mirror lacks or a short pack writes no commit and
moves no ref. Anything this client does not expect (an answer that is not a v2 pack, an HTTP
error, a server-side ``ERR``, a refused object) is ``UNSUPPORTED`` and the caller runs ``git
fetch``, which speaks every protocol and knows the user's git config (credential helpers, proxies,
CA files); a connection that fails or times out is ``UNREACHABLE``, which ``git fetch`` would be too.
Only http(s) URLs are tried; credentials in the URL are sent as HTTP basic auth, as git sends them.
A build that tags with ``{describe}`` also lists the remote's tags with the v2 ``ls-refs`` command
(``list_refs``), and fetches the objects of new ones with the same ``fetch`` command (``also``).
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import ssl
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from handlers.build.process import wait_for_exit

PACK_SECONDS = 600.0
"""How long the answer and the git process storing it may take (``mirror.GIT_TIMEOUT_SECONDS``)."""
PACK_TIMEOUT = httpx.Timeout(PACK_SECONDS, connect=30.0)
DEFAULT_UNPACK_LIMIT = 100
"""git's default ``fetch.unpackLimit``: a pack with fewer objects is unpacked into loose objects."""
_OID = re.compile(r"[0-9a-f]{40}")
HEADERS = {
    "Content-Type": "application/x-git-upload-pack-request",
    "Accept": "application/x-git-upload-pack-result",
    "Git-Protocol": "version=2",
    "User-Agent": "git/shipline",
}


class Outcome(enum.Enum):
    FETCHED = "fetched"
    """The commit and everything it needs are in the mirror."""
    UNSUPPORTED = "unsupported"
    """Nothing usable came back; ``git fetch`` may still get it."""
    UNREACHABLE = "unreachable"
    """No answer from the server at all."""


@dataclass(frozen=True, slots=True)
class Fetch:
    outcome: Outcome
    why: str = ""
    """For anything but ``FETCHED``: what went wrong, without the URL (it may carry a token)."""


class _Refused(Exception):
    """The answer was not a v2 pack this client can use."""


def fetch_objects(git_dir: Path, url: str, sha: str, haves: Sequence[str], *, unpack_limit: int,
                  env: dict[str, str], also: Sequence[str] = ()) -> Fetch:
    """Fetch the commit ``sha`` (40 hex digits), the objects ``also`` names (tags) and everything
    they need from ``url`` into ``git_dir``; moving refs to them is the caller's (``Mirror``). The
    caller holds the mirror's lock and has validated the ids; ``env`` is added to the git processes'
    environment."""
    target = _endpoint(url)
    if target is None or any(len(oid) != 40 for oid in (sha, *also)):
        return Fetch(Outcome.UNSUPPORTED, "not an http(s) URL with SHA-1 object ids")
    endpoint, auth = target
    body = fetch_request(sha, haves, also)
    try:
        with tempfile.TemporaryFile() as errors, _Store(git_dir, env, errors) as store, \
                _client().stream("POST", endpoint, content=body, headers=HEADERS, auth=auth) as answer:
            refused = _not_a_result(answer)
            if refused is not None:
                return refused
            store.write(_pack_data(_packets(answer.iter_bytes())), unpack_limit)
    except httpx.TransportError as exc:
        return _no_answer(exc)
    except _Refused as exc:
        return Fetch(Outcome.UNSUPPORTED, str(exc))
    return Fetch(Outcome.FETCHED)


def fetch_request(sha: str, haves: Iterable[str], also: Iterable[str] = ()) -> bytes:
    """The v2 ``fetch`` command for ``sha`` (and ``also``), the client holding ``haves``, negotiation
    done at once."""
    lines = [b"command=fetch\n", b"agent=git/shipline\n", None, b"thin-pack\n", b"no-progress\n", b"ofs-delta\n",
             *(b"want %s\n" % w.encode() for w in dict.fromkeys([sha, *also])),
             *(b"have %s\n" % h.encode() for h in haves), b"done\n"]
    return _command(lines)


def list_refs(url: str, prefix: str) -> tuple[Fetch, dict[str, str]]:
    """The remote's refs under ``prefix`` (``refs/tags/``) by name, each with the object id it
    holds (a tag object's own id, not peeled): the v2 ``ls-refs`` command, one request from the same
    kept client as the fetch. ``FETCHED`` with the refs, or why not (the caller then runs ``git fetch``)."""
    target = _endpoint(url)
    if target is None:
        return Fetch(Outcome.UNSUPPORTED, "not an http(s) URL"), {}
    endpoint, auth = target
    body = _command([b"command=ls-refs\n", b"agent=git/shipline\n", None, b"ref-prefix %s\n" % prefix.encode()])
    try:
        answer = _client().post(endpoint, content=body, headers=HEADERS, auth=auth)
        refused = _not_a_result(answer)
        if refused is not None:
            return refused, {}
        return Fetch(Outcome.FETCHED), _refs(_packets([answer.content]), prefix)
    except httpx.TransportError as exc:
        return _no_answer(exc), {}
    except httpx.HTTPError as exc:  # an answer this client cannot read (its encoding): git may
        return Fetch(Outcome.UNSUPPORTED, type(exc).__name__), {}
    except _Refused as exc:
        return Fetch(Outcome.UNSUPPORTED, str(exc)), {}


def _refs(packets: Iterator[bytes | None], prefix: str) -> dict[str, str]:
    """``<oid> <name>`` lines up to the flush packet; anything else refuses the whole answer."""
    refs: dict[str, str] = {}
    for packet in packets:
        if packet is None:
            return refs
        if packet.startswith(b"ERR "):
            raise _Refused(f"the server refused: {_said(packet[4:])}")
        oid, _, rest = packet.rstrip(b"\n").decode(errors="replace").partition(" ")
        name = rest.split(" ")[0]
        if not _OID.fullmatch(oid) or not name.startswith(prefix):
            raise _Refused(f"not an ls-refs line: {_said(packet)}")
        refs[name] = oid
    raise _Refused("the ref list was not finished")


def _command(lines: Sequence[bytes | None]) -> bytes:
    """A v2 command's request body: each line a pkt-line, None the delimiter, then a flush."""
    return b"".join(b"0001" if line is None else pkt_line(line) for line in lines) + b"0000"


def _not_a_result(answer: httpx.Response) -> Fetch | None:
    """``UNSUPPORTED`` with the status and content type, unless this is an upload-pack result."""
    kind = answer.headers.get("content-type", "")
    if answer.status_code != 200 or not kind.startswith("application/x-git-upload-pack-result"):
        return Fetch(Outcome.UNSUPPORTED, f"HTTP {answer.status_code} {kind or 'without a content type'}")
    return None


def _no_answer(exc: httpx.TransportError) -> Fetch:
    """A refused certificate is ``UNSUPPORTED`` (git may trust what this client does not:
    ``http.sslCAInfo``, so let it try); anything else ``UNREACHABLE``."""
    if _tls_refused(exc):
        return Fetch(Outcome.UNSUPPORTED, f"TLS refused ({type(exc).__name__})")
    return Fetch(Outcome.UNREACHABLE, type(exc).__name__)


def _endpoint(url: str) -> tuple[str, httpx.BasicAuth | None] | None:
    """``<url>/git-upload-pack`` without user-info, and that user-info as basic auth (so no URL that
    is logged carries it); None for anything but http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    auth = httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or "")) if parts.username else None
    endpoint = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], path=parts.path.rstrip("/")
                                         + "/git-upload-pack"))
    return endpoint, auth


def pkt_line(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def _packets(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    """The pkt-lines of a byte stream: each payload, or None for a flush/delimiter packet."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= 4:
            try:
                size = int(buffer[:4], 16)
            except ValueError:
                raise _Refused("not a pkt-line") from None
            if size < 4:
                del buffer[:4]
                yield None
                continue
            if len(buffer) < size:
                break
            payload = bytes(buffer[4:size])
            del buffer[:size]
            yield payload
    if buffer:
        raise _Refused("the answer ended inside a packet")


def _pack_data(packets: Iterator[bytes | None]) -> Iterator[bytes]:
    """The pack's bytes from the ``packfile`` section (side-band channel 1); the sections before it
    (none are asked for) are skipped, channel 2 (progress) is dropped, channel 3 or ``ERR`` refuses."""
    for packet in packets:
        if packet is not None and packet.startswith(b"ERR "):
            raise _Refused(f"the server refused: {_said(packet[4:])}")
        if packet == b"packfile\n":
            break
    else:
        raise _Refused("no packfile section")
    for packet in packets:
        if packet is None:
            return
        band, data = packet[:1], packet[1:]
        if band == b"\x01":
            yield data
        elif band == b"\x03":
            raise _Refused(f"the server failed while sending the pack: {_said(data)}")
    raise _Refused("the pack was not finished")


def _said(message: bytes) -> str:
    """The server's words for a log line: one line, printable, bounded."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", message.decode(errors="replace")).strip()[:300]


class _Store:
    """The git process that stores the pack: ``unpack-objects --strict`` for few objects,
    ``index-pack --stdin --fix-thin --strict`` for many, as ``git fetch`` chooses.

    The pack is usually small, so ``unpack-objects`` is started before the request is sent: its
    start-up (1-2 ms of exec and git's setup) then overlaps the server's work instead of following
    it. A pack past the limit replaces it with ``index-pack``; one never given a pack is killed on
    exit, having read nothing and so written nothing."""

    def __init__(self, git_dir: Path, env: dict[str, str], errors: IO[bytes]) -> None:
        """``errors``: a file for git's stderr."""
        self.git_dir, self.env, self.errors = git_dir, {**os.environ, **env}, errors
        self.argv = ["unpack-objects", "-q", "--strict"]
        self.git = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        self.errors.seek(0)
        self.errors.truncate()
        return subprocess.Popen(["git", "--git-dir", str(self.git_dir), *self.argv], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=self.errors, env=self.env)

    def __enter__(self) -> _Store:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.git.returncode is None:  # not used, or given up on: nothing of it is kept
            self.git.kill()
            self.git.wait()
        if self.git.stdin is not None:
            with contextlib.suppress(OSError):  # what is still buffered has no reader any more
                self.git.stdin.close()

    def write(self, data: Iterator[bytes], unpack_limit: int) -> None:
        """Store the pack ``data``; ``_Refused`` with git's words if git refuses it."""
        head = bytearray()
        for chunk in data:
            head += chunk
            if len(head) >= 12:
                break
        if len(head) < 12 or head[:4] != b"PACK":
            raise _Refused("not a pack")
        (count,) = struct.unpack(">I", head[8:12])
        if count >= unpack_limit:
            self.git.kill()
            self.git.wait()
            self.argv = ["index-pack", "--stdin", "--fix-thin", "--strict"]
            self.git = self._start()
        git, command = self.git, self.argv[0]
        assert git.stdin is not None
        try:
            git.stdin.write(head)
            for chunk in data:
                git.stdin.write(chunk)
            git.stdin.close()
        except BrokenPipeError:
            pass  # git stopped reading: its exit status says why
        try:
            code = wait_for_exit(git, PACK_SECONDS)
        except subprocess.TimeoutExpired:
            raise _Refused(f"git {command} took over {PACK_SECONDS:.0f} s") from None
        if code != 0:
            self.errors.seek(0)
            said = self.errors.read().decode(errors="replace").strip()[-300:]
            raise _Refused(f"git {command} refused the pack: {said}")


def _tls_refused(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


_client_lock = threading.Lock()
_shared: httpx.Client | None = None


def _client() -> httpx.Client:
    """One client per process, so a build reuses the connection (and TLS session) of the last one.
    It trusts the system's CA store, as git (libcurl) does, rather than httpx's bundled one."""
    global _shared
    with _client_lock:
        if _shared is None:
            _shared = httpx.Client(timeout=PACK_TIMEOUT, verify=ssl.create_default_context(), follow_redirects=False)
        return _shared

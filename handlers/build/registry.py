"""Just enough of the registry API v2 to check a manifest and re-tag it (no layers move).

Auth follows the distribution spec: try anonymously, and on a ``401`` answer the challenge —
``Basic`` with the configured credentials, or ``Bearer`` by fetching a token from the realm.
Errors are wrapped once, here: network failures, 5xx and 429 are ``RegistryUnavailable``
(transient), 401/403 are ``PushDenied`` (permanent).
"""

from __future__ import annotations

import base64
import functools
import re
import ssl
import threading
from dataclasses import dataclass, field

import httpx

from handlers.build.errors import PushDenied, RegistryUnavailable
from handlers.errors import PermanentError, UnsafeInput
from handlers.images import DOCKER_HUB, ImageRef
from handlers.settings import RegistryConfig
from handlers.validate import validate_registry_host, validate_repository

HTTP_TIMEOUT_SECONDS = 30.0
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class Credentials:
    """Resolved registry credentials; the password never appears in ``repr``."""

    username: str
    password: str = field(repr=False)


def registry_image(name: str) -> ImageRef:
    """An image name to build or push, with its host and repository validated."""
    ref = ImageRef.parse(name)
    if ref.tag or ref.digest:
        raise UnsafeInput(f"image {name!r}: give the name without a tag or digest (tags come from `tags:`)")
    validate_registry_host(ref.host, field="image host")
    validate_repository(ref.repository, field="image repository")
    return ImageRef(ref.canonical)


def credentials(config: RegistryConfig | None) -> Credentials | None:
    """Resolve ``username`` + ``password`` SecretRef now; ``None`` for anonymous registries."""
    if config is None or config.username is None or config.password is None:
        return None
    return Credentials(config.username, config.password.resolve())


@functools.cache
def verified_tls() -> ssl.SSLContext:
    """httpx's default verifying context, made once per process: ``verify=True`` builds a new one
    per client, loading the CA bundle each time (~19 ms measured; a build makes one client per
    image, a registry poll one per image and interval). Read-only once made, so threads share it."""
    return httpx.create_ssl_context(verify=True)


class RegistryClient:
    """One registry host; re-uses a bearer token across calls for one repository."""

    def __init__(self, host: str, *, insecure: bool = False, creds: Credentials | None = None) -> None:
        api_host = "registry-1.docker.io" if host == DOCKER_HUB else host
        self.base = f"{'http' if insecure else 'https'}://{api_host}"
        self.creds = creds
        self.http = httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, verify=False if insecure else verified_tls())
        self._auth: dict[str, str] = {}

    def close(self) -> None:
        self.http.close()

    def ping(self) -> None:
        """Fail fast (``RegistryUnavailable``) before a long build whose push could not land."""
        try:
            answer = self.http.get(f"{self.base}/v2/")
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"{self.base} unreachable: {exc}") from exc
        if answer.status_code >= 500 or answer.status_code == 429:
            raise RegistryUnavailable(f"{self.base} answered {answer.status_code} to GET /v2/")

    def manifest_exists(self, repository: str, reference: str) -> bool:
        answer = self._call("HEAD", repository, reference, headers={"Accept": ",".join(MANIFEST_TYPES)})
        return answer.status_code == 200

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """The manifest bytes exactly as stored, and their media type."""
        answer = self._call("GET", repository, reference, headers={"Accept": ",".join(MANIFEST_TYPES)})
        if answer.status_code != 200:
            raise PermanentError(f"manifest {repository}@{reference} is gone ({answer.status_code})")
        return answer.content, answer.headers["Content-Type"].split(";")[0]

    def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> str:
        answer = self._call("PUT", repository, tag, headers={"Content-Type": media_type}, content=body)
        if answer.status_code not in (200, 201):
            raise PermanentError(f"PUT manifest {repository}:{tag} answered {answer.status_code}: {answer.text[:200]}")
        return answer.headers.get("Docker-Content-Digest", "")

    def tags(self, repository: str, *, limit: int = 10_000) -> list[str]:
        """Every tag of ``repository`` (the distribution API's ``tags/list``, following its pages)."""
        found: list[str] = []
        url: str | None = f"{self.base}/v2/{repository}/tags/list?n=1000"
        while url and len(found) < limit:
            answer = self._authorized("GET", url, repository, {}, None)
            if answer.status_code == 404:
                return []
            if answer.status_code != 200:
                raise RegistryUnavailable(f"{self.base} answered {answer.status_code} to tags/list of {repository}")
            found += [str(t) for t in answer.json().get("tags") or []]
            link = answer.headers.get("Link", "")
            url = f"{self.base}{link.split(';')[0].strip('<> ')}" if 'rel="next"' in link else None
        return found

    def digest(self, repository: str, tag: str) -> str:
        """The manifest digest ``tag`` points at ("" when the registry does not say)."""
        answer = self._call("HEAD", repository, tag, headers={"Accept": ",".join(MANIFEST_TYPES)})
        return answer.headers.get("Docker-Content-Digest", "") if answer.status_code == 200 else ""

    def retag(self, repository: str, digest: str, tag: str) -> str:
        """Point ``tag`` at the manifest ``digest``; the same bytes, so the same digest."""
        body, media_type = self.get_manifest(repository, digest)
        return self.put_manifest(repository, tag, body, media_type) or digest

    def _call(self, method: str, repository: str, reference: str, *, headers: dict[str, str],
              content: bytes | None = None) -> httpx.Response:
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        answer = self._authorized(method, url, repository, headers, content)
        if answer.status_code in (401, 403):
            raise PushDenied(f"{self.base} refused {method} {repository}:{reference} ({answer.status_code})")
        if answer.status_code >= 500 or answer.status_code == 429:
            raise RegistryUnavailable(f"{self.base} answered {answer.status_code} to {method} {repository}")
        return answer

    def _authorized(self, method: str, url: str, repository: str, headers: dict[str, str],
                    content: bytes | None) -> httpx.Response:
        answer = self._send(method, url, repository, headers, content)
        if answer.status_code == 401 and self._authenticate(answer, repository):
            answer = self._send(method, url, repository, headers, content)
        return answer

    def _send(self, method: str, url: str, repository: str, headers: dict[str, str],
              content: bytes | None) -> httpx.Response:
        value = self._auth.get(repository)
        auth = {"Authorization": value} if value else {}
        try:
            return self.http.request(method, url, headers={**headers, **auth}, content=content)
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"{self.base} unreachable: {exc}") from exc

    def _authenticate(self, answer: httpx.Response, repository: str) -> bool:
        challenge = answer.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic" and self.creds is not None:
            pair = f"{self.creds.username}:{self.creds.password}".encode()
            self._auth[repository] = "Basic " + base64.b64encode(pair).decode()
            return True
        if scheme == "bearer":
            self._auth[repository] = f"Bearer {self._token(challenge, repository)}"
            return True
        return False

    def _token(self, challenge: str, repository: str) -> str:
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        query = {"service": params.get("service", ""), "scope": f"repository:{repository}:pull,push"}
        auth = (self.creds.username, self.creds.password) if self.creds else None
        try:
            answer = self.http.get(params["realm"], params=query, auth=auth)
        except (KeyError, httpx.TransportError) as exc:
            raise RegistryUnavailable(f"token endpoint for {self.base} failed: {exc!r}") from exc
        if answer.status_code != 200:
            raise PushDenied(f"token endpoint for {self.base} answered {answer.status_code}")
        data = answer.json()
        return str(data.get("token") or data.get("access_token") or "")


_kept: dict[tuple[str, bool], RegistryClient] = {}
_kept_lock = threading.Lock()


def ping_kept(host: str, *, insecure: bool) -> None:
    """``RegistryClient.ping`` on a client kept per host for the process's life, so a remote
    registry's TCP and TLS handshakes are paid once per worker, not once per build (a build's ping
    runs beside its fetch: on a new connection it took longer than the fetch). A failure gets one
    more try on a new client: the registry may have closed the kept connection meanwhile."""
    for attempt in (1, 2):
        with _kept_lock:
            client = _kept.get((host, insecure))
            if client is None:
                client = _kept[(host, insecure)] = RegistryClient(host, insecure=insecure)
        try:
            client.ping()
            return
        except RegistryUnavailable:
            with _kept_lock:  # not closed here: another build's ping may be using it right now
                if _kept.get((host, insecure)) is client:
                    del _kept[(host, insecure)]
            if attempt == 2:
                raise


def is_insecure(host: str, registries: list[RegistryConfig]) -> bool:
    """Whether ``host`` is configured as plain HTTP without TLS checks (``insecure: true``)."""
    return any(r.host == host and r.insecure for r in registries)


def client_for(image: ImageRef, registries: list[RegistryConfig]) -> RegistryClient:
    config = next((r for r in registries if r.host == image.host), None)
    return RegistryClient(image.host, insecure=bool(config and config.insecure), creds=credentials(config))

"""One forge call, three forges: what is worth retrying, what is not, and the token never in a
message. GitHub's and GitLab's APIs are SaaS this sandbox cannot reach: httpx's MockTransport
answers for them (Gitea's client is tested against a real Gitea in test_gitea.py)."""

from __future__ import annotations

import httpx
import pytest

from service.forges.gitea import ForgeRefused, ForgeUnavailable
from service.forges.github import GitHubClient
from service.forges.gitlab import GitLabClient

TOKEN = "tok-very-secret"


def answering(status: int, body: object) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, json=body)))


@pytest.mark.parametrize(("forge", "status", "error"), [
    (GitHubClient, 405, ForgeUnavailable), (GitHubClient, 502, ForgeUnavailable), (GitHubClient, 404, ForgeRefused),
    (GitHubClient, 422, ForgeRefused), (GitLabClient, 406, ForgeUnavailable), (GitLabClient, 422, ForgeUnavailable),
    (GitLabClient, 403, ForgeRefused),
])
def test_a_merge_the_forge_cannot_do_yet_is_retried_and_a_refusal_is_not(
        forge: type[GitHubClient] | type[GitLabClient], status: int, error: type[Exception]) -> None:
    client = forge("https://api.example", TOKEN, client=answering(status, {"message": "nope"}))
    with pytest.raises(error) as caught:
        client.merge_pull("shop/manifests", 7)
    assert type(caught.value) is error and caught.value.status == status  # type: ignore[attr-defined]
    assert f"HTTP {status} nope" in str(caught.value) and TOKEN not in str(caught.value)


def test_a_connection_failure_is_worth_retrying_and_names_the_call_only() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    client = GitHubClient("https://api.example", TOKEN, client=httpx.Client(transport=httpx.MockTransport(refuse)))
    with pytest.raises(ForgeUnavailable, match=r"^github GET /repos/shop/manifests/pulls: ConnectError$"):
        client.find_open_pull("shop/manifests", head="shipline/production", base="main")

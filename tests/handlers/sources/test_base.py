"""Rules every source shares: the registry, fail-closed verification, bounded strict JSON."""

from __future__ import annotations

import pytest

from handlers.errors import MalformedPayload, Rejected, SignatureError
from handlers.sources import SOURCES, get_source
from handlers.sources._common import MAX_JSON_DEPTH, load_json
from handlers.sources.base import Secrets
from service.config import ReceiverConfig
from tests.handlers.sources.helpers import SECRET, deep

FIXTURES_COVERED: set[str] = set()
HEADERS = {
    "x-github-event": "push", "x-gitlab-event": "Push Hook", "x-gitea-event": "push",
    "x-forgejo-event": "push", "x-event-key": "repo:push",
}


def test_every_configurable_source_is_registered():
    assert all(ReceiverConfig(source=name).source == name for name in SOURCES)
    assert all(SOURCES[name].name == name for name in SOURCES)


def test_get_source_returns_the_registered_instance():
    assert get_source("github") is SOURCES["github"]


def test_unknown_source_is_rejected_with_404():
    with pytest.raises(Rejected) as info:
        get_source("nope")
    assert info.value.status == 404


@pytest.mark.parametrize("name", sorted(SOURCES))
@pytest.mark.parametrize("secrets", [Secrets(current=None), Secrets(current=""), Secrets(None, previous="x")])
def test_verify_fails_closed_without_a_secret(name, secrets):
    headers = {"authorization": "", "x-shipline-path-token": "", "x-gitlab-token": ""}
    with pytest.raises(SignatureError, match="no secret configured for this receiver"):
        SOURCES[name].verify(headers, b"{}", secrets)


def test_secrets_repr_hides_values():
    text = repr(Secrets(current=SECRET, previous="old-one", header="X-Token"))
    assert SECRET not in text and "old-one" not in text
    assert "current=<set>" in text and "previous=<set>" in text and "X-Token" in text


def test_secrets_candidates_try_current_then_previous():
    assert Secrets(current="a", previous="b").candidates() == ("a", "b")
    assert Secrets(current="a").candidates() == ("a",)
    assert Secrets(current=None, previous="b").candidates() == ()


@pytest.mark.parametrize("name", sorted(SOURCES))
@pytest.mark.parametrize("body", [b"not json", b"", b"\xff\xfe", b"[1, 2]", b'"text"', b'{"a": NaN}'])
def test_parse_refuses_non_object_json(name, body):
    with pytest.raises(MalformedPayload):
        SOURCES[name].parse(HEADERS, body)


@pytest.mark.parametrize("name", sorted(SOURCES))
@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 5000])
def test_parse_refuses_too_deep_json(name, levels):
    with pytest.raises(MalformedPayload, match="nested deeper"):
        SOURCES[name].parse(HEADERS, deep(levels))


def test_json_at_the_depth_limit_loads():
    assert load_json(deep(MAX_JSON_DEPTH))["a"]


def test_form_encoded_body_gets_a_hint():
    with pytest.raises(MalformedPayload, match="application/json"):
        load_json(b"payload=%7B%7D")

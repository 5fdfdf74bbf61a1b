"""Generic sender: X-Signature sha256 HMAC over a strict, documented JSON body."""

from __future__ import annotations

import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ZERO_SHA, GitPushed, ImagePushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver, hub256

SOURCE = SOURCES["generic"]
FIXTURES_COVERED: set[str] = set()
SHA = "63738bb582c8b540af7bcfc18f87c575c3ed66e0"
DIGEST = "sha256:" + "ab" * 32
GIT = {"type": "git_pushed", "id": "ci-42", "repo": "org/app", "ref": "refs/heads/main", "after": SHA,
       "changed_paths": ["src/app.py"], "pusher": "ci"}
IMAGE = {"type": "image_pushed", "registry": "ghcr.io", "repository": "org/app", "tag": "1.2.3",
         "digest": DIGEST}


def send(payload: dict, secret: str = SECRET):
    body = json.dumps(payload).encode()
    return deliver(SOURCE, {"x-signature": hub256(secret, body)}, body)


def test_git_pushed():
    parsed = send(GIT)
    assert parsed.events == (GitPushed(
        repo="org/app", ref="refs/heads/main", before=ZERO_SHA, after=SHA, changed_paths=("src/app.py",),
        pusher="ci", delivery_id="ci-42", source="generic", paths_complete=True),)
    assert (parsed.delivery_id, parsed.event_type) == ("ci-42", "git_pushed")


def test_git_pushed_without_paths_is_incomplete():
    payload = {k: v for k, v in GIT.items() if k != "changed_paths"}
    assert send(payload).events[0].paths_complete is False


def test_image_pushed():
    assert send(IMAGE).events == (ImagePushed(
        registry="ghcr.io", repository="org/app", tag="1.2.3", digest=DIGEST, delivery_id="",
        source="generic"),)


@pytest.mark.parametrize(("payload", "message"), [
    (GIT | {"extra": 1}, "unknown field"),
    ({k: v for k, v in GIT.items() if k != "after"}, "missing required field"),
    (GIT | {"forced": "yes"}, "field forced must be bool"),
    (GIT | {"changed_paths": ["../x"]}, "changed_paths"),
    (IMAGE | {"tag": ""}, "^tag: "),
    (IMAGE | {"type": "other"}, "field type must be one of"),
    (IMAGE | {"type": ["git_pushed"]}, "field type must be one of"),
    (IMAGE | {"id": "has space"}, "^id: "),
])
def test_strict_validation(payload, message):
    with pytest.raises(MalformedPayload, match=message):
        send(payload)


def test_wrong_secret_tamper_missing_and_rotation():
    body = json.dumps(IMAGE).encode()
    with pytest.raises(SignatureError):
        SOURCE.verify({"x-signature": hub256(OTHER, body)}, body, Secrets(SECRET))
    with pytest.raises(SignatureError):
        SOURCE.verify({"x-signature": hub256(SECRET, body)}, body + b" ", Secrets(SECRET))
    with pytest.raises(SignatureError, match="missing signature header"):
        SOURCE.verify({}, body, Secrets(SECRET))
    SOURCE.verify({"x-signature": hub256(OTHER, body)}, body, Secrets(SECRET, previous=OTHER))

"""After every scenario of the chaos run (builds, bumps, syncs, failures with tracebacks, outages):
no secret appears in a daemon log, a build log, a stored event (raw body and headers), an API
answer, the dashboard page or its event stream. Runs last in the package (file name) on purpose."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from pathlib import Path

import httpx

from tests.chaos import evidence
from tests.chaos.senders import Delivery, post
from tests.chaos.world import World, wait_for


def secret_in_body_delivery(world: World) -> Delivery:
    """Gitea's legacy payloads carry the webhook secret in the body: it must be scrubbed."""
    path, body, headers = world.gitea_push(world.deploy_name, uuid.uuid4().hex + uuid.uuid4().hex[:8])
    payload = json.loads(body)
    payload["secret"] = world.secret("webhook-secret")
    body = json.dumps(payload).encode()
    headers["X-Gitea-Signature"] = hmac.new(world.secret("webhook-secret").encode(), body,
                                            hashlib.sha256).hexdigest()
    return path, body, headers


def read_stream(world: World, seconds: float, out: list[str]) -> None:
    headers = {"Authorization": f"Bearer {world.secret('api-token')}"}
    deadline = time.monotonic() + seconds
    try:
        with httpx.stream("GET", f"{world.url}/api/stream", headers=headers, timeout=seconds + 5) as answer:
            for chunk in answer.iter_text():
                out.append(chunk)
                if time.monotonic() > deadline:
                    break
    except httpx.HTTPError as exc:
        out.append(f"stream error {exc}")


def redis_value(world: World, key: str) -> str:
    kind = world.r.type(key)
    read = {"string": world.r.get, "hash": world.r.hgetall, "list": lambda k: world.r.lrange(k, 0, -1),
            "set": world.r.smembers, "zset": lambda k: world.r.zrange(k, 0, -1)}.get(kind)
    return repr(read(key)) if read else kind


def test_no_secret_in_logs_events_api_dashboard_or_stream(world: World) -> None:
    feed: list[str] = []
    reader = threading.Thread(target=read_stream, args=(world, 8.0, feed))
    reader.start()
    time.sleep(1)
    status, answer = post(world.url, secret_in_body_delivery(world))
    assert status == 202, answer
    wait_for(lambda: evidence.statuses(world.r, {answer["event_id"]})[answer["event_id"]] == "done", timeout=60,
             what="the delivery synced")
    reader.join()
    texts: dict[str, str] = {"sse stream": "".join(feed)}
    assert "sync" in texts["sse stream"], texts["sse stream"][:500]
    logs = [*world.run_dir.glob("*.log"), *(world.root / "shipline").rglob("*.log"),
            *world.stack.git.daemon.run_dir.glob("*.log")]
    assert len(logs) >= 4
    texts |= {str(p): p.read_text(errors="replace") for p in logs}
    with world.api() as api:
        events = api.get("/api/events", params={"limit": 2000}).json()["events"]
        texts["GET /api/events"] = json.dumps(events)
        for event in events[:300] + [e for e in events if e["source"] != "gitea"]:
            texts[f"GET /api/events/{event['id']}"] = api.get(f"/api/events/{event['id']}").text
            texts[f"GET /api/events/{event['id']}/logs"] = api.get(f"/api/events/{event['id']}/logs").text
        for path in ("/api/targets", "/metrics", "/readyz", "/healthz", "/"):
            texts[f"GET {path}"] = api.get(path).text
    texts["every value in redis"] = "\n".join(f"{k} {redis_value(world, k)}" for k in world.r.scan_iter(count=1000))
    assert json.loads(texts[f"GET /api/events/{answer['event_id']}"])["body"], "the raw body is stored"
    secrets = world.secret_values()
    assert len(secrets) == 4, secrets.keys()
    leaks = [(name, where) for name, value in secrets.items() for where, text in texts.items() if value in text]
    assert not leaks, leaks
    assert Path(world.root / "secrets").is_dir()

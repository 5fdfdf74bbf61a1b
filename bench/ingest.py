"""Ingest: Shipline's receiver (verify + record + durable enqueue) against a bare Starlette endpoint
and adnanh/webhook, with wrk, 32 connections, the same ~3 KB signed GitHub push payloads.

Every request is a distinct delivery (its own ``X-GitHub-Delivery`` and ``after`` sha, signed in
advance: wrk's Lua cannot compute an HMAC), so Shipline's dedupe never answers ``200 duplicate``;
if wrk ever ran out of distinct deliveries, the repeats are counted and reported. Afterwards:
no non-2xx answer, and Shipline's ``events`` queue holds exactly one message per accepted delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO_ROOT, Proc, Section, ms, ratio, run, say, state_dir, tool_version

CONNECTIONS = 32
THREADS = 2
SECRET = "bench-" + "s" * 26
REPO = "acme/shop"
LUA = Path(__file__).with_name("ingest.lua")
QUIESCE_SECONDS = 1.5
"""After wrk stops, wait this long so the server finishes the requests it still holds."""


def push_payload(before: str, after: str, n: int) -> dict[str, Any]:
    """A GitHub ``push`` to ``refs/heads/main`` of ``acme/shop``, shaped like the real thing (~3 KB)."""
    owner = {"name": "acme", "email": None, "login": "acme", "id": 1000001, "node_id": "MDEyOk9yZ2FuaXphdGlvbjE=",
             "avatar_url": "https://avatars.githubusercontent.com/u/1000001?v=4", "type": "Organization",
             "html_url": "https://github.com/acme", "site_admin": False}
    commit = {
        "id": after, "tree_id": hashlib.sha1(after.encode()).hexdigest(), "distinct": True,  # noqa: S324
        "message": f"frontend: tweak the landing page (#{n})", "timestamp": "2025-01-15T10:00:00+01:00",
        "url": f"https://github.com/{REPO}/commit/{after}",
        "author": {"name": "Dev One", "email": "dev@example.com", "username": "dev1"},
        "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
        "added": [], "removed": [], "modified": ["frontend/index.html", "frontend/app.js"],
    }
    parent = {**commit, "id": hashlib.sha1(f"{after}-1".encode()).hexdigest(),  # noqa: S324
              "message": "frontend: copy edits", "modified": ["frontend/index.html"]}
    parent["url"] = f"https://github.com/{REPO}/commit/{parent['id']}"
    return {
        "ref": "refs/heads/main", "before": before, "after": after,
        "repository": {
            "id": 123456789, "node_id": "R_kgDOBvQ5hQ", "name": "shop", "full_name": REPO, "private": True,
            "owner": owner, "html_url": f"https://github.com/{REPO}", "description": "The shop", "fork": False,
            "url": f"https://github.com/{REPO}", "created_at": 1700000000, "updated_at": "2025-01-15T09:00:00Z",
            "pushed_at": 1736931600, "git_url": f"git://github.com/{REPO}.git",
            "ssh_url": f"git@github.com:{REPO}.git", "clone_url": f"https://github.com/{REPO}.git",
            "size": 2048, "default_branch": "main", "master_branch": "main", "organization": "acme",
            "visibility": "private", "topics": [], "archived": False, "disabled": False,
        },
        "pusher": {"name": "dev1", "email": "dev@example.com"},
        "organization": {"login": "acme", "id": 1000001, "url": "https://api.github.com/orgs/acme"},
        "sender": {"login": "dev1", "id": 2000002, "type": "User", "site_admin": False,
                   "html_url": "https://github.com/dev1"},
        "created": False, "deleted": False, "forced": False, "base_ref": None,
        "compare": f"https://github.com/{REPO}/compare/{before[:12]}...{after[:12]}",
        "commits": [parent, commit], "head_commit": commit,
    }


def write_bodies(directory: Path, count: int, prefix: str) -> int:
    """``count`` distinct signed deliveries split over ``THREADS`` files; returns the body size."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [(directory / f"bodies-{t}.tsv").open("w") for t in range(THREADS)]
    size = 0
    try:
        for n in range(count):
            after = hashlib.sha1(f"{prefix}-{n}".encode()).hexdigest()  # noqa: S324 - a fake commit id
            before = hashlib.sha1(f"{prefix}-{n}-parent".encode()).hexdigest()  # noqa: S324
            body = json.dumps(push_payload(before, after, n), separators=(",", ":"))
            signature = "sha256=" + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
            delivery = f"{secrets.token_hex(4)}-{prefix}-{n:08d}"
            files[n % THREADS].write(f"{delivery}\t{signature}\t{body}\n")
            size = len(body)
    finally:
        for f in files:
            f.close()
    return size


def wrk(url: str, bodies: Path, seconds: int) -> dict[str, Any]:
    done = run(["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA),
                url, "--", str(bodies)], timeout=seconds + 120)
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH-JSON "))
    data = json.loads(line.removeprefix("BENCH-JSON "))
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["non2xx"] = data["other"] + data["err_status"]
    data["errors"] = data["err_connect"] + data["err_read"] + data["err_write"] + data["err_timeout"]
    return data


def probe(url: str, good: bool) -> int:
    """One request by hand: a valid delivery (``good``) or a wrong signature; returns the status."""
    import httpx

    body = json.dumps(push_payload("0" * 39 + "1", secrets.token_hex(20), 0), separators=(",", ":")).encode()
    key = SECRET if good else "wrong"
    sig = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push",
               "X-GitHub-Delivery": secrets.token_hex(8), "X-Hub-Signature-256": sig}
    return httpx.post(url, content=body, headers=headers, timeout=10).status_code


# -- the three servers -------------------------------------------------------------------------------


def shipline_config(root: Path, redis_url: str, port: int) -> Path:
    secret = root / "github-secret"
    secret.write_text(SECRET)
    token = root / "api-token"
    token.write_text(secrets.token_urlsafe(24))
    config = {
        "state_dir": str(root / "shipline"),
        "server": {"host": "127.0.0.1", "port": port, "api_token": {"file": str(token)}},
        "redis": {"url": redis_url},
        "receivers": [{"source": "github", "secret": {"file": str(secret)}}],
        "repos": [{"name": "shop", "url": f"https://github.com/{REPO}.git", "match": [REPO], "branches": ["main"],
                   "images": [{"name": "registry.example.com/shop/frontend", "context": "frontend"}]}],
    }
    path = root / "shipline.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def webhook_hooks(root: Path) -> Path:
    hooks = [{
        "id": "github", "execute-command": "/bin/true", "command-working-directory": str(root),
        "response-message": "accepted", "trigger-rule-mismatch-http-response-code": 401,
        "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": SECRET,
                                   "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}},
    }]
    path = root / "hooks.json"
    path.write_text(json.dumps(hooks, indent=2))
    return path


def uvicorn_argv(app: str, port: int) -> list[str]:
    return [PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--log-level", "warning", "--no-access-log"]


def measure(name: str, url: str, root: Path, seconds: int) -> dict[str, Any]:
    say(f"{name}: warm-up, then wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s")
    wrk(url, root / "warmup", 2)
    result = wrk(url, root / "main", seconds)
    say(f"{name}: {result['rps']:.0f} req/s, p50 {result['p50_us'] / 1000:.1f} ms, "
        f"p99 {result['p99_us'] / 1000:.1f} ms, non-2xx {result['non2xx']}, errors {result['errors']}")
    return result


def queue_counts(redis_url: str) -> dict[str, int]:
    import redis

    from service.broker import NAMESPACE, QUEUE_EVENTS

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {"queued": int(r.llen(f"{NAMESPACE}:{QUEUE_EVENTS}")),
                "messages": int(r.hlen(f"{NAMESPACE}:{QUEUE_EVENTS}.msgs")),
                "records": int(r.zcard("shipline:events"))}
    finally:
        r.close()


def accepted_by_metrics(url: str) -> dict[str, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "shipline_deliveries_total" and sample.labels.get("source") == "github":
                out[sample.labels["outcome"]] = out.get(sample.labels["outcome"], 0) + sample.value
    return out


def bench(quick: bool = False) -> Section:
    from devstack.process import free_port
    from devstack.redis import RedisServer

    seconds = 4 if quick else 10
    section = Section("ingest", "Ingest")
    with state_dir("ingest") as root:
        size = write_bodies(root / "main", 12_000 if quick else 30_000, "main")
        write_bodies(root / "warmup", 4_000, "warmup")
        results: dict[str, dict[str, Any]] = {}
        checks: dict[str, Any] = {}

        port = free_port()
        with Proc(uvicorn_argv("bench.bare_app:app", port), log=root / "bare.log").wait_port(port):
            results["bare"] = measure("bare Starlette", f"http://127.0.0.1:{port}/hooks/github", root, seconds)

        port = free_port()
        argv = ["webhook", "-hooks", str(webhook_hooks(root)), "-ip", "127.0.0.1", "-port", str(port)]
        with Proc(argv, log=root / "webhook.log").wait_port(port):
            url = f"http://127.0.0.1:{port}/hooks/github"
            checks["webhook_probe"] = (probe(url, True), probe(url, False))
            results["webhook"] = measure("adnanh/webhook", url, root, seconds)

        redis = RedisServer(root / "stack", free_port())
        redis.start()
        try:
            port = free_port()
            config = shipline_config(root, redis.url, port)
            argv = [PYTHON, "-m", "service.cli", "serve", "--config", str(config)]
            with Proc(argv, log=root / "shipline.log").wait_port(port):
                base = f"http://127.0.0.1:{port}"
                url = f"{base}/hooks/github"
                checks["shipline_probe"] = (probe(url, True), probe(url, False))
                wrk(url, root / "warmup", 2)
                time.sleep(QUIESCE_SECONDS)  # answers still in flight when wrk stopped
                before, counted = queue_counts(redis.url), accepted_by_metrics(base)
                result = wrk(url, root / "main", seconds)
                time.sleep(QUIESCE_SECONDS)
                after, outcomes = queue_counts(redis.url), accepted_by_metrics(base)
                outcomes = {k: v - counted.get(k, 0) for k, v in outcomes.items()}
            results["shipline"] = result
            say(f"Shipline: {result['rps']:.0f} req/s, p50 {result['p50_us'] / 1000:.1f} ms, "
                f"p99 {result['p99_us'] / 1000:.1f} ms, non-2xx {result['non2xx']}, errors {result['errors']}")
            checks.update(before=before, after=after, outcomes=outcomes,
                          appendfsync=_redis_config(redis.url, "appendfsync"), aof=_aof_info(redis.url))
        finally:
            redis.stop()
    _report(section, results, checks, size, seconds)
    return section


def _aof_info(url: str) -> str:
    import redis

    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        info = r.info("persistence")
        return (f"{info.get('aof_rewrites', '?')} AOF rewrite(s) during the runs, AOF now "
                f"{int(info.get('aof_current_size', 0)) / 1e6:.0f} MB")
    finally:
        r.close()


def _redis_config(url: str, key: str) -> str:
    import redis

    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        return str(r.config_get(key).get(key))
    finally:
        r.close()


def _report(section: Section, results: dict[str, dict[str, Any]], checks: dict[str, Any], size: int,
            seconds: int) -> None:
    ship, bare, hook = results["shipline"], results["bare"], results["webhook"]
    to_bare, to_hook = ship["rps"] / bare["rps"], ship["rps"] / hook["rps"]
    p99 = ship["p99_us"] / 1e6
    section.row("throughput vs bare Starlette (req/s)", f"{ship['rps']:.0f}", baseline=f"{bare['rps']:.0f}",
                ratio=f"{to_bare:.2f}×", target="≥ 0.7×", met=to_bare >= 0.7)
    section.row("throughput vs adnanh/webhook (req/s)", f"{ship['rps']:.0f}", baseline=f"{hook['rps']:.0f}",
                ratio=f"{to_hook:.2f}×", target="≥ 2×", met=to_hook >= 2)
    section.row("latency p50", ms(ship["p50_us"] / 1e6), baseline=f"{ms(bare['p50_us'] / 1e6)} bare / "
                f"{ms(hook['p50_us'] / 1e6)} webhook", ratio=ratio(ship["p50_us"], bare["p50_us"]))
    section.row("latency p99", ms(p99), baseline=f"{ms(bare['p99_us'] / 1e6)} bare / "
                f"{ms(hook['p99_us'] / 1e6)} webhook", ratio=ratio(ship["p99_us"], bare["p99_us"]),
                target="≤ 20 ms", met=p99 <= 0.020)
    enqueued = checks["after"]["messages"] - checks["before"]["messages"]
    accepted = int(checks["outcomes"].get("accepted", 0))
    others = {k: v for k, v in checks["outcomes"].items() if k != "accepted" and v}
    clean = all(r["non2xx"] == 0 and r["errors"] == 0 for r in results.values())
    section.row("non-2xx answers; accepted deliveries in the queue",
                f"{sum(r['non2xx'] + r['errors'] for r in results.values())}; "
                f"{enqueued} of {accepted}", target="0; all",
                met=clean and enqueued == accepted and not others and ship["wrapped"] == 0)
    section.facts += [
        f"wrk {tool_version(['wrk', '-v'])}; -t{THREADS} -c{CONNECTIONS} -d{seconds}s after a 2 s warm-up, "
        f"same host (wrk shares the 2 cores with the server under test); body {size} bytes, "
        "a GitHub `push` to refs/heads/main of a configured repo, HMAC-SHA256 signed.",
        "Every server: one process on 127.0.0.1. Shipline and the bare app: uvicorn (uvloop, httptools), "
        "`--log-level warning`, no access log. adnanh/webhook "
        f"({tool_version(['webhook', '-version'])}): `payload-hmac-sha256` rule on X-Hub-Signature-256, "
        "`/bin/true`, 401 on a rule mismatch.",
        f"Sanity probes (valid, wrong signature): Shipline {checks['shipline_probe']}, "
        f"webhook {checks['webhook_probe']}.",
        f"Shipline answers: {ship['s202']} × 202, {ship['s200']} × 200, {ship['other']} other; "
        f"deliveries sent after running out of distinct ones: {ship['wrapped']}; server-side outcomes "
        f"during the run (its metrics): {checks['outcomes']} (wrk does not count the answers still in flight "
        "when it stops, so the server accepted a few more than wrk saw).",
        f"Queue check: `shipline-q:events` messages {checks['before']['messages']} → "
        f"{checks['after']['messages']} (+{enqueued}) for {accepted} deliveries accepted during the run; "
        f"Redis appendfsync={checks['appendfsync']}, {checks['aof']}; event records kept: {checks['after']['records']} "
        "(retention trims the log, never the queue).",
    ]
    for name, r in results.items():
        section.facts.append(f"{name}: {r['requests']} requests in {r['duration_us'] / 1e6:.1f} s, "
                             f"{r['rps']:.0f} req/s, p50 {r['p50_us'] / 1000:.2f} ms, p90 {r['p90_us'] / 1000:.2f} ms, "
                             f"p99 {r['p99_us'] / 1000:.2f} ms, max {r['max_us'] / 1000:.1f} ms, "
                             f"non-2xx {r['non2xx']}, socket errors {r['errors']}")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(REPO_ROOT))
    print(bench(quick="--quick" in sys.argv))

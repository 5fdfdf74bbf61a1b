"""Ingest: Shipline's receiver (verify + record + durable enqueue) against a bare Starlette endpoint
and adnanh/webhook, with wrk, 32 connections, the same ~3 KB signed GitHub push payloads.

Sides: bare Starlette (1 process), adnanh/webhook, Shipline with 1 and with 2 receiver processes,
and Shipline with a fleet config (3,000 repos + 3,000 environments) — three rounds, every other
one in reverse order, medians. Every request is a distinct delivery (its own ``X-GitHub-Delivery`` and
``after`` sha, signed in advance: wrk's Lua cannot compute an HMAC), so Shipline's dedupe never
answers ``200 duplicate``; Redis is flushed between Shipline runs. Afterwards: no non-2xx answer,
and Shipline's ``events`` queue holds exactly one message per accepted delivery. Then bad input
at full load (wrong signature, oversize, malformed: their answers, and the Redis commands a flood
of invalid signatures cost), and a py-spy profile of the hot path.
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
MAX_BODY = 64 * 1024
"""Shipline's ``server.max_body_bytes`` in the bench: the push passes, the oversize flood is 413."""
FLEET = 3000
ROUNDS = 3
"""Odd: each side's median is then its middle run, not the lower of two middles."""
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


def write_bodies(directory: Path, count: int, prefix: str, *, secret: str = SECRET,
                 body_of: Any = None) -> int:
    """``count`` distinct signed deliveries split over ``THREADS`` files; returns the body size.
    ``body_of(n)`` overrides the body (bytes), e.g. for the bad-input floods."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [(directory / f"bodies-{t}.tsv").open("w") for t in range(THREADS)]
    size = 0
    try:
        for n in range(count):
            if body_of is None:
                after = hashlib.sha1(f"{prefix}-{n}".encode()).hexdigest()  # noqa: S324 - a fake commit id
                before = hashlib.sha1(f"{prefix}-{n}-parent".encode()).hexdigest()  # noqa: S324
                body = json.dumps(push_payload(before, after, n), separators=(",", ":"))
            else:
                body = body_of(n)
            signature = "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
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
    data["non2xx"] = data["other"] + data["err_status"] + sum(data[k] for k in ("s400", "s401", "s413", "s503"))
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


# -- the servers -------------------------------------------------------------------------------------


def shipline_config(root: Path, redis_url: str, port: int, *, fleet: int = 0) -> Path:
    """One repo (``acme/shop``), or ``fleet`` repos and environments with ``acme/shop`` among them."""
    secret = root / "github-secret"
    secret.write_text(SECRET)
    token = root / "api-token"
    token.write_text(secrets.token_urlsafe(24))
    shop = {"name": "shop", "url": f"https://github.com/{REPO}.git", "match": [REPO], "branches": ["main"],
            "images": [{"name": "registry.example.com/shop/frontend", "context": "frontend"}]}
    repos = [{"name": f"svc-{n:05d}", "url": f"https://git.example.com/team-{n % 97}/svc-{n:05d}.git",
              "match": [f"team-{n % 97}/svc-{n:05d}"],
              "images": [{"name": f"registry.example.com/team-{n % 97}/svc-{n:05d}"}]} for n in range(fleet)]
    environments = [{"name": f"env-{n:05d}", "git": {"url": f"https://git.example.com/deploy/env-{n:05d}.git"},
                     "images": [{"image": f"registry.example.com/team-{n % 97}/svc-{n:05d}"}]}
                    for n in range(fleet)]
    config = {
        "state_dir": str(root / "shipline"),
        "server": {"host": "127.0.0.1", "port": port, "api_token": {"file": str(token)},
                   "max_body_bytes": MAX_BODY},
        "redis": {"url": redis_url},
        "receivers": [{"source": "github", "secret": {"file": str(secret)}}],
        "repos": [*repos[: fleet // 2], shop, *repos[fleet // 2:]],
        "environments": environments,
    }
    path = root / f"shipline{'-fleet' if fleet else ''}.yaml"
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
            "--log-level", "warning", "--no-access-log", "--no-proxy-headers"]


def measure(name: str, url: str, root: Path, seconds: int) -> dict[str, Any]:
    say(f"{name}: warm-up, then wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s")
    wrk(url, root / "warmup", 2)
    time.sleep(QUIESCE_SECONDS)
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


def command_counts(redis_url: str) -> dict[str, int]:
    """Redis's own count of calls per command (``INFO commandstats``). The bench's own reads are
    ``info`` and the ``client`` calls a new connection makes; ``commands_between`` leaves them out."""
    import redis

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in r.info("commandstats").items()}
    finally:
        r.close()


def commands_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The commands others ran between two ``command_counts`` (the bench's own reads left out)."""
    ours = ("info", "client", "client|setinfo", "hello")
    return {name: n - before.get(name, 0) for name, n in after.items()
            if name not in ours and n > before.get(name, 0)}


def flush(redis_url: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        r.flushall()
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


def shipline_argv(config: Path, workers: int) -> list[str]:
    return [PYTHON, "-m", "service.cli", "serve", "--config", str(config), "--workers", str(workers),
            "--log-format", "json"]


def run_shipline(name: str, root: Path, redis_url: str, config: Path, port: int, workers: int,
                 seconds: int) -> dict[str, Any]:
    """One measured run of Shipline on a flushed Redis; the queue check from Redis itself."""
    flush(redis_url)
    with Proc(shipline_argv(config, workers), log=root / f"{name}.log").wait_port(port):
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/hooks/github"
        wrk(url, root / "warmup", 2)
        time.sleep(QUIESCE_SECONDS)  # answers still in flight when wrk stopped
        before, counted = queue_counts(redis_url), accepted_by_metrics(base)
        result = wrk(url, root / "main", seconds)
        time.sleep(QUIESCE_SECONDS)
        after, outcomes = queue_counts(redis_url), accepted_by_metrics(base)
    outcomes = {k: v - counted.get(k, 0) for k, v in outcomes.items()}
    result["check"] = {"before": before, "after": after, "outcomes": outcomes,
                       "enqueued": after["messages"] - before["messages"],
                       "accepted": int(outcomes.get("accepted", 0))}
    say(f"{name}: {result['rps']:.0f} req/s, p50 {result['p50_us'] / 1000:.1f} ms, "
        f"p99 {result['p99_us'] / 1000:.1f} ms, non-2xx {result['non2xx']}, errors {result['errors']}, "
        f"enqueued {result['check']['enqueued']} of {result['check']['accepted']} accepted")
    return result


def bad_input(root: Path, redis_url: str, config: Path, port: int, seconds: int) -> dict[str, Any]:
    """Floods of wrong signatures, oversize and malformed bodies at full load: the answers, and how
    many Redis commands the invalid-signature flood cost (read from Redis's own counter)."""
    good = json.dumps(push_payload("1" * 40, "2" * 40, 0), separators=(",", ":"))
    floods = {
        "401": (root / "bad-401", {"secret": "not-the-secret"}),
        "413": (root / "bad-413", {"body_of": lambda n: good[:-1] + ',"pad":"' + "x" * MAX_BODY + '"}'}),
        "400": (root / "bad-400", {"body_of": lambda n: f'{{"ref": 1, "n": {n}}}'}),
    }
    for directory, options in floods.values():
        write_bodies(directory, 400, directory.name, **options)
    out: dict[str, Any] = {}
    flush(redis_url)
    with Proc(shipline_argv(config, 1), log=root / "bad.log").wait_port(port):
        url = f"http://127.0.0.1:{port}/hooks/github"
        for status, (directory, _) in floods.items():
            before = command_counts(redis_url)
            result = wrk(url, directory, seconds)
            ran = commands_between(before, command_counts(redis_url))
            out[status] = {"requests": result["requests"], "answered": result[f"s{status}"],
                           "rps": result["rps"], "p99_us": result["p99_us"],
                           "redis_commands": sum(ran.values()), "commands": ran}
            say(f"bad input {status}: {result[f's{status}']} of {result['requests']} answered {status}, "
                f"{result['rps']:.0f} req/s, Redis commands during the flood: {out[status]['redis_commands']}")
    return out


def profile(root: Path, redis_url: str, config: Path, port: int, seconds: int) -> list[str]:
    """py-spy on one Shipline process under wrk: the hot path's top frames by own time."""
    import collections
    import re
    import shutil
    import subprocess

    spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    flush(redis_url)
    raw = root / "profile.txt"
    with Proc(shipline_argv(config, 1), log=root / "profile.log").wait_port(port) as proc:
        recorder = subprocess.Popen([spy, "record", "--pid", str(proc.popen.pid), "--format", "raw", "-o", str(raw),
                                     "--rate", "200", "--duration", str(seconds), "--nonblocking"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wrk(f"http://127.0.0.1:{port}/hooks/github", root / "main", seconds)
        recorder.wait(timeout=seconds + 60)
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = re.sub(r":\d+\)$", ")", stack.split(";")[-1])
        own[leaf] += int(count)
        total += int(count)
    return [f"{100 * n / total:.1f}% {frame}" for frame, n in own.most_common(12)] if total else []


def bench(quick: bool = False) -> Section:
    from devstack.process import free_port
    from devstack.redis import RedisServer

    seconds = 4 if quick else 10
    section = Section("ingest", "Ingest")
    with state_dir("ingest") as root:
        # Enough distinct deliveries that no run wraps around (a repeat is a cheap duplicate): the
        # fastest Shipline run seen was ~5,200 req/s, so 100,000 covers 10 s with room to spare.
        size = write_bodies(root / "main", 30_000 if quick else 100_000, "main")
        write_bodies(root / "warmup", 16_000, "warmup")
        redis = RedisServer(root / "stack", free_port())
        redis.start()
        rounds: dict[str, list[dict[str, Any]]] = {}
        checks: dict[str, Any] = {}
        try:
            port = free_port()
            configs = {"one": shipline_config(root, redis.url, port),
                       "fleet": shipline_config(root, redis.url, port, fleet=FLEET)}
            sides = {
                "bare": lambda: _bare(root, seconds),
                "webhook": lambda: _webhook(root, seconds, checks),
                "shipline": lambda: run_shipline("shipline", root, redis.url, configs["one"], port, 1, seconds),
                "shipline_2": lambda: run_shipline("shipline-2", root, redis.url, configs["one"], port, 2, seconds),
                "fleet": lambda: run_shipline("fleet", root, redis.url, configs["fleet"], port, 1, seconds),
            }
            order = list(sides)
            for n in range(1 if quick else ROUNDS):
                for name in order if n % 2 == 0 else reversed(order):
                    rounds.setdefault(name, []).append(sides[name]())
            with Proc(shipline_argv(configs["one"], 1), log=root / "probe.log").wait_port(port):
                checks["shipline_probe"] = (probe(f"http://127.0.0.1:{port}/hooks/github", True),
                                            probe(f"http://127.0.0.1:{port}/hooks/github", False))
            checks["bad"] = bad_input(root, redis.url, configs["one"], port, 3 if quick else 5)
            checks["profile"] = profile(root, redis.url, configs["one"], port, 4 if quick else 8)
            checks.update(appendfsync=_redis_config(redis.url, "appendfsync"), aof=_aof_info(redis.url))
        finally:
            redis.stop()
    _report(section, rounds, checks, size, seconds)
    return section


def _bare(root: Path, seconds: int) -> dict[str, Any]:
    from devstack.process import free_port

    port = free_port()
    with Proc(uvicorn_argv("bench.bare_app:app", port), log=root / "bare.log").wait_port(port):
        return measure("bare Starlette", f"http://127.0.0.1:{port}/hooks/github", root, seconds)


def _webhook(root: Path, seconds: int, checks: dict[str, Any]) -> dict[str, Any]:
    from devstack.process import free_port

    port = free_port()
    argv = ["webhook", "-hooks", str(webhook_hooks(root)), "-ip", "127.0.0.1", "-port", str(port)]
    with Proc(argv, log=root / "webhook.log").wait_port(port):
        url = f"http://127.0.0.1:{port}/hooks/github"
        checks["webhook_probe"] = (probe(url, True), probe(url, False))
        return measure("adnanh/webhook", url, root, seconds)


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


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput (its latencies and checks go together)."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    return ordered[(len(ordered) - 1) // 2]


def _report(section: Section, rounds: dict[str, list[dict[str, Any]]], checks: dict[str, Any], size: int,
            seconds: int) -> None:
    results = {name: _median_run(runs) for name, runs in rounds.items()}
    ship, two, fleet = results["shipline"], results["shipline_2"], results["fleet"]
    bare, hook = results["bare"], results["webhook"]
    to_bare, to_hook, p99 = ship["rps"] / bare["rps"], ship["rps"] / hook["rps"], ship["p99_us"] / 1e6
    section.row("throughput, 1 process, vs adnanh/webhook (req/s)", f"{ship['rps']:.0f}",
                baseline=f"{hook['rps']:.0f}", ratio=f"{to_hook:.2f}×", target="≥ 1.0×", met=to_hook >= 1.0)
    section.row("throughput, 1 process, vs bare Starlette (req/s)", f"{ship['rps']:.0f}",
                baseline=f"{bare['rps']:.0f}", ratio=f"{to_bare:.2f}×", target="≥ 0.5×", met=to_bare >= 0.5)
    section.row("throughput, 2 processes (req/s)", f"{two['rps']:.0f}", baseline=f"{hook['rps']:.0f} webhook / "
                f"{bare['rps']:.0f} bare", ratio=f"{two['rps'] / hook['rps']:.2f}× / {two['rps'] / bare['rps']:.2f}×")
    section.row("latency p50, 1 process", ms(ship["p50_us"] / 1e6), baseline=f"{ms(bare['p50_us'] / 1e6)} bare / "
                f"{ms(hook['p50_us'] / 1e6)} webhook", ratio=ratio(ship["p50_us"], bare["p50_us"]))
    section.row("latency p99, 1 process, 32 connections", ms(p99), baseline=f"{ms(bare['p99_us'] / 1e6)} bare / "
                f"{ms(hook['p99_us'] / 1e6)} webhook", ratio=ratio(ship["p99_us"], bare["p99_us"]),
                target="≤ 20 ms", met=p99 <= 0.020)
    section.row("latency p99, 2 processes", ms(two["p99_us"] / 1e6))
    fleet_ratio = fleet["rps"] / ship["rps"]
    section.row(f"throughput with {FLEET:,} repos + {FLEET:,} environments vs 1 repo", f"{fleet['rps']:.0f}",
                baseline=f"{ship['rps']:.0f}", ratio=f"{fleet_ratio:.2f}×", target="≥ 0.9×", met=fleet_ratio >= 0.9)
    ships = [r for name in ("shipline", "shipline_2", "fleet") for r in rounds[name]]
    clean = all(r["non2xx"] == 0 and r["errors"] == 0 for runs in rounds.values() for r in runs)
    whole = all(r["check"]["enqueued"] == r["check"]["accepted"] and r["wrapped"] == 0 for r in ships)
    section.row("non-2xx answers; accepted deliveries found in the queue (every Shipline run)",
                f"{sum(r['non2xx'] + r['errors'] for runs in rounds.values() for r in runs)}; "
                f"{sum(r['check']['enqueued'] for r in ships)} of {sum(r['check']['accepted'] for r in ships)}",
                target="0; all", met=clean and whole)
    bad = checks["bad"]
    right = all(b["answered"] == b["requests"] for b in bad.values())
    section.row("bad input at full load: wrong signature / oversize / malformed answered 401 / 413 / 400",
                " / ".join(f"{b['answered']} of {b['requests']}" for b in bad.values()),
                baseline=" / ".join(f"{b['rps']:.0f} req/s" for b in bad.values()), target="all", met=right)
    flood = bad["401"]
    ran = ", ".join(f"{name} {n}" for name, n in sorted(flood.get("commands", {}).items()))
    section.row("Redis commands during a flood of invalid signatures",
                str(flood["redis_commands"]) + (f" ({ran})" if ran else ""),
                target="0", met=bad["401"]["redis_commands"] == 0)
    section.facts += [
        f"wrk {tool_version(['wrk', '-v'])}; -t{THREADS} -c{CONNECTIONS} -d{seconds}s after a 2 s warm-up, "
        f"same host (wrk shares the 2 cores with the server under test); body {size} bytes, "
        "a GitHub `push` to refs/heads/main of a configured repo, HMAC-SHA256 signed. "
        f"{len(rounds['shipline'])} round(s), every other one in reverse order; each row is the median-throughput "
        "run.",
        "Bare app and Shipline: uvicorn (uvloop, httptools), `--log-level warning`, no access log; Shipline "
        "logs one JSON line per delivery to a file, as in production. adnanh/webhook "
        f"({tool_version(['webhook', '-version'])}): `payload-hmac-sha256` rule on X-Hub-Signature-256, "
        "`/bin/true`, 401 on a rule mismatch.",
        f"Sanity probes (valid, wrong signature): Shipline {checks['shipline_probe']}, "
        f"webhook {checks['webhook_probe']}.",
        f"Redis appendfsync={checks['appendfsync']}; {checks['aof']}; flushed between Shipline runs.",
    ]
    for name, runs in rounds.items():
        for r in runs:
            line = (f"{name}: {r['requests']} requests in {r['duration_us'] / 1e6:.1f} s, {r['rps']:.0f} req/s, "
                    f"p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms, "
                    f"max {r['max_us'] / 1000:.1f} ms, non-2xx {r['non2xx']}, socket errors {r['errors']}")
            if "check" in r:
                c = r["check"]
                line += (f"; queue `shipline-q:events` +{c['enqueued']} messages for {c['accepted']} accepted "
                         f"(server outcomes {c['outcomes']}; wrk counts no answer still in flight at its end)")
            section.facts.append(line)
    if checks["profile"]:
        section.facts.append("Hot path profile (py-spy, one process under wrk, own time per frame): "
                             + "; ".join(checks["profile"]))


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(REPO_ROOT))
    print(bench(quick="--quick" in sys.argv))

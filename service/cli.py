"""``shipline``: one CLI for the receiver, the worker, the dev stack and operators."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from handlers.errors import ShiplineError

app = typer.Typer(help="Shipline: Git push to running software, GitOps-style.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
dev = typer.Typer(help="The local stack: Redis, registry, git server, Kubernetes.", no_args_is_help=True)
config_cli = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(dev, name="dev")
app.add_typer(config_cli, name="config")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="shipline.yaml (or $SHIPLINE_CONFIG)")]
DRAMATIQ_WORKER_TIMEOUT_MS = "1000"
"""= ``service.broker.WORKER_THREAD_POLL_MS``, kept here because importing the broker loads dramatiq."""
StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="dev stack state (or $SHIPLINE_STATE_DIR)")]


def _config_path(path: Path | None) -> Path:
    """``--config``, else $SHIPLINE_CONFIG, else ./shipline.yaml, else the running dev stack's."""
    from service.config import CONFIG_ENV, DEFAULT_CONFIG, DEV_STATE_DIR, config_path

    if path is None and not os.environ.get(CONFIG_ENV) and not DEFAULT_CONFIG.exists():
        dev = Path(os.environ.get("SHIPLINE_STATE_DIR", DEV_STATE_DIR)) / "shipline.yaml"
        if dev.exists():
            return dev
    return config_path(path)


def _config(path: Path | None) -> Any:
    from service.config import load_config

    return load_config(_config_path(path))


def _stack(state_dir: Path | None) -> Any:
    from devstack.stack import DEFAULT_STATE_DIR, Stack

    return Stack(state_dir or Path(os.environ.get("SHIPLINE_STATE_DIR", DEFAULT_STATE_DIR)))


@app.command()
def serve(config: ConfigOpt = None, host: str | None = None, port: int | None = None,
          log_format: str = "auto",
          workers: Annotated[int, typer.Option(min=1, max=64, help="receiver processes on one port")] = 1) -> None:
    """Run the webhook receiver, API and dashboard (Starlette on uvicorn); ``--workers N`` runs N
    processes on one port (the kernel spreads connections; metrics are merged across them)."""
    import uvicorn

    from service.logs import setup_logging

    setup_logging(log_format)
    path = _config_path(config)
    cfg = _config(path)  # fail fast, with the key path, before any process starts
    # Nothing reads the client's address (no access log), so uvicorn's X-Forwarded-For rewriting
    # would be work for nothing: 1.3 % of the receiver's time per delivery in the wrk profile.
    options: dict[str, Any] = {"host": host or cfg.server.host, "port": port or cfg.server.port,
                               "log_level": "warning", "access_log": False, "proxy_headers": False}
    if workers == 1:
        from service.app import create_app

        uvicorn.run(create_app(cfg), **options)
        return
    import atexit
    import shutil
    import tempfile

    if log_format == "auto":
        log_format = "console" if sys.stderr.isatty() else "json"
    metrics_dir = tempfile.mkdtemp(prefix="shipline-receiver-metrics-")
    atexit.register(shutil.rmtree, metrics_dir, True)
    os.environ.update({"SHIPLINE_CONFIG": str(path.resolve()), "SHIPLINE_LOG_FORMAT": log_format,
                       "PROMETHEUS_MULTIPROC_DIR": metrics_dir})
    uvicorn.run("service.app:app_from_environment", factory=True, workers=workers, **options)


@app.command()
def worker(config: ConfigOpt = None, processes: int = 1, threads: int = 4, log_format: str = "auto") -> None:
    """Run the actor workers (build, bump, sync) on dramatiq; their metrics on
    ``server.worker_metrics_port``; logs as ``serve`` (JSON unless on a terminal)."""
    # dramatiq reads its worker_timeout when first imported, so this must come before any dramatiq import
    os.environ.setdefault("dramatiq_worker_timeout", DRAMATIQ_WORKER_TIMEOUT_MS)
    from dramatiq.cli import main as dramatiq_main

    from service.workermetrics import serve_worker_metrics

    if config is not None:
        os.environ["SHIPLINE_CONFIG"] = str(config)
    cfg = _config(None)  # fail fast, with the key path, before forking workers
    if log_format == "auto":  # decided here: the worker processes log into a pipe, never a tty
        log_format = "console" if sys.stderr.isatty() else "json"
    os.environ["SHIPLINE_LOG_FORMAT"] = log_format
    serve_worker_metrics(cfg.server.host, cfg.server.worker_metrics_port)  # before the fork
    sys.argv = ["dramatiq", "service.actors", "--processes", str(processes),
                "--threads", str(threads), "--skip-logging"]
    raise SystemExit(dramatiq_main())


@dev.command("up")
def dev_up(state_dir: StateOpt = None, kube: bool = True,
           services: Annotated[bool, typer.Option(help="also run Shipline's receiver and worker")] = False,
           demo: Annotated[bool, typer.Option(help="create the demo repos and config (implies --services)")] = False,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Install what is missing and start the stack (idempotent)."""
    from devstack.install import ensure_installed

    def progress(message: str) -> None:
        typer.echo(f"· {message}", err=True)

    installed = ensure_installed()
    if installed:
        progress(f"installed: {' '.join(installed)}")
    stack = _stack(state_dir)
    status = stack.up(kube=kube, progress=progress)
    steps: list[str] = []
    if demo:
        from devstack.demo import create_demo, next_steps

        progress("creating the demo repos (shop, shop-deploy)")
        repos = create_demo(stack)
        steps = next_steps(stack, repos)
    if services or demo:
        progress("starting Shipline receiver and worker")
        stack.start_services()
        stack.wait_services()
        status = stack.status()
    _print_status(status, as_json)
    if steps and not as_json:
        typer.echo("\nTry it (three commands):")
        for i, step in enumerate(steps, 1):
            typer.echo(f"  {i}. {step}")


@app.command()
def up(state_dir: StateOpt = None) -> None:
    """The local stack plus Shipline's receiver and worker, with the demo (same as `make up`)."""
    dev_up(state_dir=state_dir, kube=True, services=True, demo=True, as_json=False)


@app.command()
def down(state_dir: StateOpt = None) -> None:
    """Stop the local stack and Shipline's processes (state is kept)."""
    dev_down(state_dir=state_dir)


@dev.command("down")
def dev_down(state_dir: StateOpt = None) -> None:
    """Stop every process of the stack (state is kept)."""
    _stack(state_dir).down()
    typer.echo("stack stopped")


@dev.command("status")
def dev_status(state_dir: StateOpt = None,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Where everything is: URLs, ports, kubeconfig, config path, state dir."""
    _print_status(_stack(state_dir).status(), as_json)


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(status, indent=2))
        return
    for key, value in status.items():
        if isinstance(value, dict):
            parts = ", ".join(f"{k}={v}" for k, v in value.items())
            typer.echo(f"{key:<11} {parts}")
        else:
            typer.echo(f"{key:<11} {value}")


@config_cli.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate the config and print what Shipline would do for each repo, image and environment."""
    from service.plan import describe

    for line in describe(_config(config)):
        typer.echo(line)


def main() -> None:
    try:
        app()
    except ShiplineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None



def _api(config: Path | None) -> Any:
    import httpx

    from service.api import api_token

    cfg = _config(config)
    token = api_token(cfg)
    if not token:
        raise typer.BadParameter("server.api_token is not configured (or its secret is missing)")
    base = cfg.server.public_url or f"http://{cfg.server.host}:{cfg.server.port}"
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _answer(response: Any) -> Any:
    if response.status_code >= 400:
        raise ShiplineError(f"{response.request.method} {response.request.url.path}: "
                            f"{response.status_code} {response.text[:300]}")
    return response.json()


@app.command()
def events(config: ConfigOpt = None, source: str | None = None, repo: str | None = None,
           status: str | None = None, limit: int = 20,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List recent events (newest first)."""
    params = {k: v for k, v in {"source": source, "repo": repo, "status": status, "limit": limit}.items() if v}
    with _api(config) as client:
        data = _answer(client.get("/api/events", params=params))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for e in data["events"]:
        ev = e["event"]
        what = (f"{ev.get('repo')} {ev.get('ref')}@{str(ev.get('after'))[:7]}" if e["kind"] == "git_pushed"
                else f"{ev.get('registry')}/{ev.get('repository')}:{ev.get('tag')}")
        typer.echo(f"{e['id']}  {e['status']:<10} {e['source']:<9} {what}  {e.get('outcome', '')[:80]}")


@app.command()
def replay(event_id: str, config: ConfigOpt = None) -> None:
    """Replay a recorded event (actors are idempotent: no duplicate build or commit)."""
    with _api(config) as client:
        data = _answer(client.post(f"/api/events/{event_id}/replay"))
    typer.echo(f"replayed {event_id} as {data.get('event_id')}")


@app.command()
def status(config: ConfigOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each environment: revision, images, health, last sync, drift."""
    with _api(config) as client:
        data = _answer(client.get("/api/environments"))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for t in data["environments"]:
        typer.echo(f"{t['name']:<14} {t.get('health', 'Unknown'):<12} rev {str(t.get('revision') or '-')[:10]:<10} "
                   f"objects {t.get('objects', '-')} (applied {len(t.get('applied') or [])}, unchanged "
                   f"{t.get('unchanged', '-')})  drift {len(t.get('drift') or [])}  "
                   f"{', '.join(t.get('images') or [])}")
        for line in _status_details(t):
            typer.echo(f"{'':<14} {line}")


def _status_details(t: dict[str, Any]) -> list[str]:
    lines = [f"render {t['render']}"] if str(t.get("render", "")).startswith("kluctl") else []
    for seen in (t.get("drift_seen") or [])[:3]:
        lines.append(f"drift seen {time.strftime('%H:%M:%S', time.localtime(seen['at']))}: {seen['what']}")
    for d in t.get("drift") or []:
        by = f" by {', '.join(d['by'])}" if d.get("by") else ""
        lines.append(f"drift {'corrected' if d.get('corrected') else 'reported'}: {d['ref']}{by}")
    if t.get("drift_paused"):
        lines.append(t["drift_paused"])
    if t.get("lead_time"):
        lines.append("lead time " + ", ".join(f"{s:.1f}s (release {c[:12]})" for c, s in t["lead_time"].items()))
    if t.get("rollback"):
        r = t["rollback"]
        lines.append(f"rollback {r.get('outcome')}: {r.get('reason', '')}"[:200])
    cache = t.get("cache") or {}
    scopes = cache.get("scopes") or []
    states = sorted({s["state"] for s in scopes})
    lines.append(f"cache: {', '.join(states) or cache.get('state', '-')} ({cache.get('objects', 0)} objects, "
                 f"{len(scopes)} watches)")
    return lines


@app.command()
def promote(image: str, to: Annotated[str, typer.Option("--to", help="environment to promote into")],
            tag: Annotated[str | None, typer.Option(help="tag (default: the one running upstream)")] = None,
            config: ConfigOpt = None) -> None:
    """Promote an image into an environment by hand (policy and downgrade guard still apply)."""
    with _api(config) as client:
        data = _answer(client.post("/api/promote", json={"image": image, "to": to, "tag": tag}))
    typer.echo(f"promotion of {image}:{data.get('tag')} to {to} queued as {data.get('event_id')}")


@app.command()
def rollback(environment: str, to: Annotated[str | None, typer.Option(
        "--to", help="revert every commit after this one (all must be Shipline's own bumps)")] = None,
        config: ConfigOpt = None) -> None:
    """Revert Shipline's last bump of ENVIRONMENT in Git (or back to a revision), hold its tags back, sync."""
    with _api(config) as client:
        data = _answer(client.post(f"/api/environments/{environment}/rollback", json={"to": to} if to else None))
    typer.echo(f"{data.get('queued')}: queued; `shipline status` shows the outcome")


@app.command()
def logs(event_id: str, config: ConfigOpt = None) -> None:
    """Show the build log(s) of an event."""
    with _api(config) as client:
        data = _answer(client.get(f"/api/events/{event_id}/logs"))
    for name, text in data.get("logs", {}).items():
        typer.echo(f"==> {name} <==\n{text}")
    if not data.get("logs"):
        typer.echo("no build logs for this event")


@app.command()
def diff(environment: str, config: ConfigOpt = None) -> None:
    """Server-side dry run of ENVIRONMENT against its cluster: what a sync would change."""
    from handlers.sync.render import describe as describe_render
    from service.syncrun import diff_now

    cfg = _config(config)
    env = cfg.environment(environment)
    changes = diff_now(env, cfg.state_dir)
    if env.render.mode == "kluctl":
        typer.echo(f"{environment}: {describe_render(env)}")
    if not changes:
        typer.echo(f"{environment}: in sync")
    for line in changes:
        typer.echo(line)


if __name__ == "__main__":
    main()

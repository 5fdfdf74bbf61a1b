"""``shipline``: one CLI for the receiver, the worker, the dev stack and operators."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from handlers.errors import ShiplineError
from service.devstack.process import StackError

app = typer.Typer(help="Shipline: Git push to running software, GitOps-style.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
dev = typer.Typer(help="The local stack: Redis, registry, git server, Kubernetes.", no_args_is_help=True)
config_cli = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(dev, name="dev")
app.add_typer(config_cli, name="config")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="shipline.yaml (or $SHIPLINE_CONFIG)")]
StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="dev stack state (or $SHIPLINE_STATE_DIR)")]


def _config(path: Path | None) -> Any:
    from service.config import load_config

    return load_config(path)


def _stack(state_dir: Path | None) -> Any:
    from service.devstack.stack import DEFAULT_STATE_DIR, Stack

    return Stack(state_dir or Path(os.environ.get("SHIPLINE_STATE_DIR", DEFAULT_STATE_DIR)))


@app.command()
def serve(config: ConfigOpt = None, host: str | None = None, port: int | None = None,
          log_format: str = "auto") -> None:
    """Run the webhook receiver, API and dashboard (Starlette on uvicorn)."""
    import uvicorn

    from service.app import create_app
    from service.logs import setup_logging

    setup_logging(log_format)
    cfg = _config(config)
    uvicorn.run(create_app(cfg), host=host or cfg.server.host, port=port or cfg.server.port,
                log_level="warning", access_log=False)


@app.command()
def worker(config: ConfigOpt = None, processes: int = 1, threads: int = 4) -> None:
    """Run the actor workers (build, bump, sync) on dramatiq."""
    from dramatiq.cli import main as dramatiq_main

    if config is not None:
        os.environ["SHIPLINE_CONFIG"] = str(config)
    _config(None)  # fail fast, with the key path, before forking workers
    sys.argv = ["dramatiq", "service.actors", "--processes", str(processes),
                "--threads", str(threads)]
    raise SystemExit(dramatiq_main())


@dev.command("up")
def dev_up(state_dir: StateOpt = None, kube: bool = True, services: bool = False,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Install what is missing and start the stack (idempotent)."""
    from service.devstack.install import ensure_installed

    installed = ensure_installed()
    if installed:
        typer.echo(f"installed: {' '.join(installed)}", err=True)
    stack = _stack(state_dir)
    status = stack.up(kube=kube, progress=lambda m: typer.echo(f"· {m}", err=True))
    if services:
        stack.start_services()
        status = stack.status()
    _print_status(status, as_json)


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
    except (ShiplineError, StackError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

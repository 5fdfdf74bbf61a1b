"""The HTTP edge (Starlette): read under a cap, hand off to ``Ingest``, answer.

No git, registry or cluster call happens here. The hot path (``POST /hooks/...``) is native
asyncio end to end: verify and parse on the loop, one Lua call on the asyncio Redis client.
The operator API still uses the synchronous store in threads (it is not on the hot path).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from handlers.errors import PayloadTooLarge, Rejected
from handlers.sources import PATH_TOKEN_HEADER
from service import metrics
from service.api import api_routes
from service.config import CONFIG_ENV, Config, load_config
from service.dashboard import dashboard_routes
from service.durability import check_durability
from service.ingest import BacklogFull, Ingest, Unavailable
from service.store import REFUSED_KEY, AsyncEventLog, EventStore

log = logging.getLogger("shipline.receiver")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


Deliver = Callable[[str, str, str | None, dict[str, str], Callable[[int], Awaitable[bytes]]], Awaitable[Reply]]
HOOK_PATH = re.compile(r"/hooks/([^/]+)(?:/([^/]+)(?:/([^/]+))?)?")
"""``/hooks/{source}[/{name}[/{token}]]``, as the routes below match it."""


class Receiver(Starlette):
    """Starlette with the webhook POST answered straight from ASGI, before the middleware and the
    router: profiled under load (py-spy), Starlette's error and exception middleware, its routing,
    its request and its response objects were 12 % of the receiver's time per delivery, for a
    path whose every answer is JSON built here. Every other request, and any other method on a
    hook path (405), goes through Starlette as before."""

    def __init__(self, deliver: Deliver, **options: Any) -> None:
        super().__init__(**options)
        self.deliver = deliver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            matched = HOOK_PATH.fullmatch(scope["path"])
            if matched:
                await self._hook(matched, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _hook(self, matched: re.Match[str], scope: Scope, receive: Receive, send: Send) -> None:
        source, name, token = matched.group(1), matched.group(2) or "default", matched.group(3)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def read_body(cap: int) -> bytes:
            return await read_capped_asgi(receive, headers.get("content-length"), cap)

        try:
            reply = await self.deliver(source, name, token, headers, read_body)
        except ClientDisconnect:
            return  # nothing was read whole, so nothing was recorded; no one is left to answer
        except Exception:  # as Starlette's ServerErrorMiddleware would: a 500, and the trace logged
            log.exception("delivery to /hooks/%s/%s failed", source, name)
            reply = Reply(500, {"error": "internal server error"})
        body = orjson.dumps(reply.body)
        await send({"type": "http.response.start", "status": reply.status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items())]})
        await send({"type": "http.response.body", "body": body})


async def read_capped_asgi(receive: Receive, declared: str | None, cap: int) -> bytes:
    """The body from the ASGI messages, refused with 413 (``PayloadTooLarge``) as soon as it passes
    ``cap`` bytes, even while streaming; ``declared``: its Content-Length, if sent."""
    if declared and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the {cap}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"body exceeds the {cap}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_capped(request: Request, cap: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``cap`` bytes (even while streaming)."""
    return await read_capped_asgi(request.receive, request.headers.get("content-length"), cap)


def create_app(config: Config, *, store: EventStore | None = None, check_redis: bool = True) -> Receiver:
    """The receiver; ``check_redis`` runs the durability check at start-up (see ``service.durability``)."""
    store = store or EventStore.from_url(config.redis.url, retention=config.redis.retention)
    events = AsyncEventLog(config.redis.url, config.redis.retention)
    ingest = Ingest(config, events)

    async def deliver(source: str, name: str, token: str | None, headers: dict[str, str],
                      read_body: Callable[[int], Awaitable[bytes]]) -> Reply:
        """One delivery, whichever way it came in: ``headers`` with lower-case names."""
        receiver = config.receiver(source, name)
        if receiver is None:
            metrics.DELIVERIES.labels(source=source, outcome="unknown_receiver").inc()
            return Reply(404, {"error": f"no receiver configured at /hooks/{source}/{name}"})
        headers.pop(PATH_TOKEN_HEADER, None)
        if token is not None:
            headers[PATH_TOKEN_HEADER] = token
        try:
            body = await read_body(config.server.max_body_bytes)
            answer = await ingest.accept(receiver, headers, body)
        except Rejected as exc:
            metrics.DELIVERIES.labels(source=source, outcome=f"rejected_{exc.status}").inc()
            log.info("delivery rejected", extra={"source": source, "receiver": name,
                                                  "status": exc.status, "reason": str(exc)})
            return Reply(exc.status, {"error": str(exc)})
        except Unavailable as exc:
            outcome = "backlog_full" if isinstance(exc, BacklogFull) else "unavailable"
            metrics.DELIVERIES.labels(source=source, outcome=outcome).inc()
            if outcome == "backlog_full":
                with contextlib.suppress(Exception):  # the count on the dashboard, across receivers
                    await events.client.incr(REFUSED_KEY)
            log.warning("delivery refused (%s): %s", outcome, exc, extra={"source": source, "receiver": name})
            return Reply(503, {"error": str(exc) if outcome == "backlog_full" else
                               "event store unavailable, retry later"}, {"Retry-After": str(exc.retry_after)})
        outcome = _outcome(answer.status, answer.body)
        metrics.DELIVERIES.labels(source=source, outcome=outcome).inc()
        log.info("delivery %s", outcome, extra={"source": source, "receiver": name,
                                                  "status": answer.status,
                                                  "correlation_id": answer.body.get("event_id", "")})
        return Reply(answer.status, answer.body)

    async def hook(request: Request) -> Response:
        """The routed way in (``Receiver`` answers a POST before routing; this serves the rest)."""
        params = request.path_params
        reply = await deliver(params["source"], params.get("name", "default"), params.get("token"),
                              {k.lower(): v for k, v in request.headers.items()},
                              lambda cap: read_capped(request, cap))
        return JSONResponse(reply.body, reply.status, headers=reply.headers)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        """Ready = Redis answers and the backlog is under its cap (else deliveries get 503)."""
        try:
            backlog = await events.backlog()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"ready": False, "redis": type(exc).__name__}, 503)
        metrics.BACKLOG.set(backlog)
        cap = config.redis.max_backlog
        body = {"ready": backlog < cap, "backlog": backlog, "max_backlog": cap}
        if backlog >= cap:
            body["reason"] = "backlog: deliveries are refused with 503 until the workers catch up"
        return JSONResponse(body, 200 if backlog < cap else 503)

    async def metrics_endpoint(request: Request) -> Response:
        with contextlib.suppress(Exception):  # metrics must never fail the scrape
            metrics.BACKLOG.set(await events.backlog())
        await to_thread.run_sync(metrics.refresh_queue_depth, store)
        return metrics.render()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if check_redis:
            await check_durability(events.client, config.redis.durability)
        # The config (thousands of models with a fleet) lives as long as the process: keep the
        # cyclic GC from re-walking it on every full collection under load.
        gc.collect()
        gc.freeze()
        yield
        await events.aclose()

    routes = [
        Route("/hooks/{source}", hook, methods=["POST"]),
        Route("/hooks/{source}/{name}", hook, methods=["POST"]),
        Route("/hooks/{source}/{name}/{token}", hook, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *api_routes(config, store, ingest),
        *dashboard_routes(config),
    ]
    app = Receiver(deliver, routes=routes, lifespan=lifespan)
    app.state.store = store
    app.state.ingest = ingest
    return app


def app_from_environment() -> Receiver:
    """Factory for ``uvicorn --factory`` (``shipline serve --workers N``): config from $SHIPLINE_CONFIG."""
    from service.logs import setup_logging

    setup_logging(os.environ.get("SHIPLINE_LOG_FORMAT", "auto"))
    return create_app(load_config(os.environ.get(CONFIG_ENV)))


def _outcome(status: int, body: dict[str, Any]) -> str:
    if "duplicate" in body:
        return "duplicate"
    if "ignored" in body:
        return "ignored"
    if status == 200:
        return "ping"
    return "accepted"

"""The HTTP edge (Starlette): read under a cap, hand off to ``Ingest`` in a thread, answer.

No git, registry or cluster call happens here; every Redis call runs off the event loop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handlers.errors import PayloadTooLarge, Rejected
from service import metrics
from service.api import api_routes
from service.broker import make_broker
from service.config import Config
from service.dashboard import dashboard_routes
from service.ingest import PATH_TOKEN_HEADER, Ingest, Unavailable
from service.store import EventStore

log = logging.getLogger("shipline.receiver")


async def read_capped(request: Request, cap: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``cap`` bytes (even while streaming)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the {cap}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"body exceeds the {cap}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(config: Config, *, store: EventStore | None = None, broker: Any = None) -> Starlette:
    store = store or EventStore.from_url(config.redis.url, retention=config.redis.event_retention,
                                         dedupe_ttl=config.redis.dedupe_ttl_seconds)
    broker = broker or make_broker(config.redis.url)
    ingest = Ingest(config, store, broker)

    async def hook(request: Request) -> Response:
        source = request.path_params["source"]
        name = request.path_params.get("name", "default")
        receiver = config.receiver(source, name)
        if receiver is None:
            metrics.DELIVERIES.labels(source=source, outcome="unknown_receiver").inc()
            return JSONResponse({"error": f"no receiver configured at /hooks/{source}/{name}"}, 404)
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers.pop(PATH_TOKEN_HEADER, None)
        if "token" in request.path_params:
            headers[PATH_TOKEN_HEADER] = request.path_params["token"]
        try:
            body = await read_capped(request, config.server.max_body_bytes)
            answer = await to_thread.run_sync(ingest.accept, receiver, headers, body)
        except Rejected as exc:
            metrics.DELIVERIES.labels(source=source, outcome=f"rejected_{exc.status}").inc()
            log.info("delivery rejected", extra={"source": source, "receiver": name,
                                                  "status": exc.status, "reason": str(exc)})
            return JSONResponse({"error": str(exc)}, exc.status)
        except Unavailable as exc:
            metrics.DELIVERIES.labels(source=source, outcome="unavailable").inc()
            log.warning("delivery refused: %s", exc, extra={"source": source, "receiver": name})
            return JSONResponse({"error": "event store unavailable, retry later"}, 503,
                                headers={"Retry-After": "5"})
        outcome = _outcome(answer.status, answer.body)
        metrics.DELIVERIES.labels(source=source, outcome=outcome).inc()
        log.info("delivery %s", outcome, extra={"source": source, "receiver": name,
                                                  "status": answer.status,
                                                  "correlation_id": answer.body.get("event_id", "")})
        return JSONResponse(answer.body, answer.status)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        try:
            await to_thread.run_sync(store.ping)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"ready": False, "redis": type(exc).__name__}, 503)
        return JSONResponse({"ready": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        with contextlib.suppress(Exception):
            broker.close()

    routes = [
        Route("/hooks/{source}", hook, methods=["POST"]),
        Route("/hooks/{source}/{name}", hook, methods=["POST"]),
        Route("/hooks/{source}/{name}/{token}", hook, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics.endpoint),
        *api_routes(config, store, ingest),
        *dashboard_routes(config),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store = store
    app.state.ingest = ingest
    return app


def _outcome(status: int, body: dict[str, Any]) -> str:
    if "duplicate" in body:
        return "duplicate"
    if "ignored" in body:
        return "ignored"
    if status == 200:
        return "ping"
    return "accepted"

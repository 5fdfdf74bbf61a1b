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
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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


def create_app(config: Config, *, store: EventStore | None = None, check_redis: bool = True) -> Starlette:
    """The receiver; ``check_redis`` runs the durability check at start-up (see ``service.durability``)."""
    store = store or EventStore.from_url(config.redis.url, retention=config.redis.retention)
    events = AsyncEventLog(config.redis.url, config.redis.retention)
    ingest = Ingest(config, events)

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
            answer = await ingest.accept(receiver, headers, body)
        except Rejected as exc:
            metrics.DELIVERIES.labels(source=source, outcome=f"rejected_{exc.status}").inc()
            log.info("delivery rejected", extra={"source": source, "receiver": name,
                                                  "status": exc.status, "reason": str(exc)})
            return JSONResponse({"error": str(exc)}, exc.status)
        except Unavailable as exc:
            outcome = "backlog_full" if isinstance(exc, BacklogFull) else "unavailable"
            metrics.DELIVERIES.labels(source=source, outcome=outcome).inc()
            if outcome == "backlog_full":
                with contextlib.suppress(Exception):  # the count on the dashboard, across receivers
                    await events.client.incr(REFUSED_KEY)
            log.warning("delivery refused (%s): %s", outcome, exc, extra={"source": source, "receiver": name})
            return JSONResponse({"error": str(exc) if outcome == "backlog_full" else
                                 "event store unavailable, retry later"}, 503,
                                headers={"Retry-After": str(exc.retry_after)})
        outcome = _outcome(answer.status, answer.body)
        metrics.DELIVERIES.labels(source=source, outcome=outcome).inc()
        log.info("delivery %s", outcome, extra={"source": source, "receiver": name,
                                                  "status": answer.status,
                                                  "correlation_id": answer.body.get("event_id", "")})
        return JSONResponse(answer.body, answer.status)

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
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store = store
    app.state.ingest = ingest
    return app


def app_from_environment() -> Starlette:
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

"""The dashboard page and its live feed (Server-Sent Events from Redis pub/sub).

The page itself holds no data; everything it shows comes from the token-guarded API, and the
token stays in the browser's sessionStorage. The feed carries step summaries only: no bodies,
no headers, nothing secret.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from service.api import api_token, bearer_ok
from service.config import Config

PAGE = Path(__file__).with_name("static") / "dashboard.html"
KEEPALIVE_SECONDS = 15.0


def dashboard_routes(config: Config) -> list[Route]:
    token = api_token(config)

    async def page(request: Request) -> Response:
        return FileResponse(PAGE, media_type="text/html")

    async def stream(request: Request) -> Response:
        if not bearer_ok(request, token):
            return Response("missing or wrong bearer token", 401)
        return StreamingResponse(_events(config.redis.url, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return [Route("/", page), Route("/api/stream", stream)]


async def _events(url: str, request: Request) -> AsyncIterator[bytes]:
    client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("shipline:updates")
        yield b": connected\n\n"
        while not await request.is_disconnected():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=KEEPALIVE_SECONDS)
            if message is None:
                yield b": keepalive\n\n"
                continue
            yield f"event: step\ndata: {message['data']}\n\n".encode()
    except (aioredis.RedisError, OSError):
        yield b"event: error\ndata: {\"error\": \"event store unavailable\"}\n\n"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pubsub.aclose(), 2)
            await asyncio.wait_for(client.aclose(), 2)

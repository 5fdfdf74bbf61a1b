"""The ingest baseline: a bare Starlette endpoint that reads the body and answers 202, nothing else.

Run by ``bench.ingest`` under the same uvicorn settings as ``shipline serve`` (one process,
``--log-level warning``, no access log, no proxy headers).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def hook(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"received": len(body)}, 202)


app = Starlette(routes=[Route("/hooks/{source}", hook, methods=["POST"])])

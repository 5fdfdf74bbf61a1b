"""The operator API (bearer token): events, replay, manual triggers, environment status."""

from __future__ import annotations

import hmac
import json
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handlers.errors import ConfigError, MalformedPayload, UnsafeInput
from handlers.events import GitPushed, ImagePushed, event_from_dict, event_to_dict
from handlers.images import ImageRef, same_image
from handlers.sync.render import describe as describe_render
from handlers.validate import (
    validate_clone_url,
    validate_digest,
    validate_git_repo,
    validate_ref,
    validate_registry_host,
    validate_repository,
    validate_sha,
    validate_tag,
)
from service.config import Config
from service.environments import EnvironmentStatusStore
from service.ingest import Ingest, Unavailable
from service.livestate import cluster_name
from service.metrics import lead_times
from service.store import EventRecord, EventStore, new_event_id


def bearer_ok(request: Request, token: str | None) -> bool:
    """Constant-time check of ``Authorization: Bearer <token>``; no token configured → refuse."""
    if not token:
        return False
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token.encode())


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or ``MalformedPayload`` (400)."""
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise MalformedPayload("body must be JSON") from exc
    if not isinstance(body, dict):
        raise MalformedPayload("body must be a JSON object")
    return body


def api_token(config: Config) -> str | None:
    if config.server.api_token is None:
        return None
    try:
        return config.server.api_token.resolve()
    except ConfigError:
        return None


def manual_event(body: dict[str, Any]) -> GitPushed | ImagePushed:
    """``{"type": "image_pushed", "image": "reg/repo", "tag": "1.2.3", "digest": ""}`` or
    ``{"type": "git_pushed", "repo": "...", "ref": "refs/heads/main", "sha": "<40 hex>"}``."""
    kind = body.get("type")
    if kind == "image_pushed":
        image = ImageRef.parse(str(body.get("image", "")))
        if not image.name or image.tag or image.digest:
            raise MalformedPayload("image must be 'registry/repository' (the tag goes in 'tag')")
        return ImagePushed(registry=validate_registry_host(image.host),
                           repository=validate_repository(image.repository),
                           tag=validate_tag(str(body.get("tag", ""))),
                           digest=validate_digest(str(body.get("digest", ""))),
                           delivery_id="", source="manual")
    if kind == "git_pushed":
        sha = validate_sha(str(body.get("sha", "")))
        repo = str(body.get("repo", ""))
        repo = validate_clone_url(repo, field="repo") if ":" in repo else validate_git_repo(repo)
        return GitPushed(repo=repo, ref=validate_ref(str(body.get("ref", ""))),
                         before="0" * 40, after=sha, changed_paths=(), pusher="manual",
                         delivery_id="", source="manual", paths_complete=False)
    raise MalformedPayload("type must be 'image_pushed' or 'git_pushed'")


def api_routes(config: Config, store: EventStore, ingest: Ingest) -> list[Route]:
    token = api_token(config)
    statuses = EnvironmentStatusStore(store.r)

    def guarded(handler: Any) -> Any:
        async def wrapper(request: Request) -> Response:
            if not bearer_ok(request, token):
                return JSONResponse({"error": "missing or wrong bearer token"}, 401,
                                    headers={"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request)
            except (MalformedPayload, UnsafeInput) as exc:
                return JSONResponse({"error": str(exc)}, 400)
            except Unavailable as exc:
                return JSONResponse({"error": f"not accepted now, retry later: {exc}"}, 503,
                                    headers={"Retry-After": str(exc.retry_after)})
        return wrapper

    async def list_events(request: Request) -> Response:
        q = request.query_params
        try:
            offset, limit = int(q.get("offset", 0)), min(int(q.get("limit", 50)), 500)
        except ValueError as exc:
            raise MalformedPayload("offset and limit must be integers") from exc
        records = await to_thread.run_sync(lambda: store.list(
            source=q.get("source"), repo=q.get("repo"), status=q.get("status"),
            offset=offset, limit=limit))
        summaries = [r.summary() for r in records]
        for summary in summaries:
            if summary["correlation_id"] in ("", summary["id"]):  # a release: its lead time per environment
                summary["lead_times"] = await to_thread.run_sync(lead_times, store, summary["id"])
        return JSONResponse({"events": summaries, "offset": offset, "limit": limit})

    async def get_event(request: Request) -> Response:
        record = await to_thread.run_sync(store.get, request.path_params["id"])
        if record is None:
            return JSONResponse({"error": "no such event"}, 404)
        lead = await to_thread.run_sync(lead_times, store, record.correlation_id or record.id)
        return JSONResponse({**record.summary(), "headers": record.headers, "body": record.body, "lead_times": lead})

    async def replay(request: Request) -> Response:
        original = await to_thread.run_sync(store.get, request.path_params["id"])
        if original is None:
            return JSONResponse({"error": "no such event"}, 404)
        event = event_from_dict(original.event)
        record = _record(event, source=original.source, receiver=original.receiver,
                         replay_of=original.id, correlation_id=original.correlation_id)
        answer = await ingest.submit(record, [])
        return JSONResponse({**answer.body, "replay_of": original.id}, answer.status)

    async def trigger(request: Request) -> Response:
        body = await json_object(request)
        event = manual_event(body)
        record = _record(event, source="manual", receiver="api")
        answer = await ingest.submit(record, [])
        return JSONResponse(answer.body, answer.status)

    clusters = {e.name: cluster_name(e.cluster) for e in config.environments}
    renders = {e.name: describe_render(e) for e in config.environments}

    async def list_environments(request: Request) -> Response:
        names = [e.name for e in config.environments]
        found = await to_thread.run_sync(statuses.all, names, clusters)
        for name, status in zip(names, found, strict=True):
            status["render"] = renders[name]  # e.g. "kluctl target=staging"
        return JSONResponse({"environments": found, "targets": found})

    async def rollback(request: Request) -> Response:
        """Queue ``shipline rollback ENV [--to REVISION]``; its outcome shows in the status."""
        name = request.path_params["name"]
        if name not in clusters:
            raise MalformedPayload(f"unknown environment {name!r}")
        body = await json_object(request) if await request.body() else {}
        to = str(body.get("to") or "")
        if to:
            validate_sha(to, field="to")
        await to_thread.run_sync(lambda: enqueue_rollback(config, name, to))
        return JSONResponse({"queued": f"rollback of {name}" + (f" to {to[:10]}" if to else "")}, 202)

    async def promote(request: Request) -> Response:
        body = await json_object(request)
        env_name, image = str(body.get("to", "")), str(body.get("image", ""))
        if env_name not in {e.name for e in config.environments}:
            raise MalformedPayload(f"unknown environment {env_name!r}")
        tag = body.get("tag") or await to_thread.run_sync(
            upstream_tag, statuses, [e.name for e in config.environments if e.name != env_name], image)
        if not tag:
            raise MalformedPayload(f"no tag given and no other environment runs {image}")
        event = manual_event({"type": "image_pushed", "image": image, "tag": tag})
        record = _record(event, source="manual", receiver="api")
        record.event_type = f"promote:{env_name}"
        answer = await ingest.submit(record, [])
        return JSONResponse({**answer.body, "tag": tag}, answer.status)

    async def queues(request: Request) -> Response:
        """Backpressure: the unprocessed backlog against its cap, each stage queue, refusals."""
        return JSONResponse(await to_thread.run_sync(queue_state, store, config.redis.max_backlog))

    async def build_logs(request: Request) -> Response:
        event_id = request.path_params["id"]
        logs = await to_thread.run_sync(store.r.hgetall, f"shipline:buildlog:{event_id}")
        return JSONResponse({"event_id": event_id, "logs": logs})

    return [
        Route("/api/promote", guarded(promote), methods=["POST"]),
        Route("/api/events/{id}/logs", guarded(build_logs), methods=["GET"]),
        Route("/api/events", guarded(list_events), methods=["GET"]),
        Route("/api/events", guarded(trigger), methods=["POST"]),
        Route("/api/events/{id}", guarded(get_event), methods=["GET"]),
        Route("/api/events/{id}/replay", guarded(replay), methods=["POST"]),
        Route("/api/environments", guarded(list_environments), methods=["GET"]),
        Route("/api/queues", guarded(queues), methods=["GET"]),
        Route("/api/environments/{name}/rollback", guarded(rollback), methods=["POST"]),
        Route("/api/targets", guarded(list_environments), methods=["GET"]),  # the name before 0.2
    ]


def upstream_tag(statuses: EnvironmentStatusStore, env_names: list[str], image: str) -> str | None:
    """The tag another environment currently runs for ``image`` (from its last sync)."""
    for name in env_names:
        for ref in statuses.get(name).get("images") or []:
            running = ImageRef.parse(str(ref))
            if running.tag and same_image(running.name, image):
                return running.tag
    return None


def _record(event: GitPushed | ImagePushed, *, source: str, receiver: str,
            replay_of: str | None = None, correlation_id: str = "") -> EventRecord:
    record = EventRecord(id=new_event_id(), source=source, receiver=receiver, kind=event.kind,
                         event=event_to_dict(event), replay_of=replay_of,
                         event_type="replay" if replay_of else "manual")
    record.correlation_id = correlation_id or record.id
    return record


def enqueue_rollback(config: Config, env_name: str, to: str) -> None:
    from service.broker import QUEUE_BUMP, make_broker, message

    broker = make_broker(config.redis.url)
    try:
        broker.enqueue(message(QUEUE_BUMP, "rollback_env", env_name, to))
    finally:
        broker.close()


def queue_state(store: EventStore, max_backlog: int) -> dict[str, Any]:
    from service.broker import NAMESPACE, QUEUES
    from service.store import REFUSED_KEY

    pipe = store.r.pipeline(transaction=False)
    for queue in QUEUES:
        pipe.llen(f"{NAMESPACE}:{queue}")
        pipe.llen(f"{NAMESPACE}:{queue}.DQ")
    pipe.get(REFUSED_KEY)
    counts = pipe.execute()
    return {"backlog": store.backlog(), "max_backlog": max_backlog, "refused": int(counts[-1] or 0),
            "queues": {q: {"ready": counts[2 * i], "delayed": counts[2 * i + 1]} for i, q in enumerate(QUEUES)}}

"""Logging: JSON lines in production, readable on a terminal; secrets never formatted in.

An actor run binds its context once (actor, message id, event id or environment, correlation
id, attempt: ``ActorRunLog``); every line logged while it runs, from any module, carries it
(``BoundContext``, a ``contextvars`` filter: each worker thread runs one message at a time).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from dramatiq.middleware import Middleware

actor_log = logging.getLogger("shipline.actor")
STANDARD = set(vars(logging.LogRecord("x", 0, "", 0, "", (), None))) | {"message", "asctime"}


_bound: ContextVar[dict[str, Any]] = ContextVar("shipline_log_context", default={})  # noqa: B039 - never mutated


def bind(**values: Any) -> Token[dict[str, Any]]:
    """Add ``values`` to every log line of this thread's current work, until ``unbind``."""
    return _bound.set({**_bound.get(), **values})


def unbind(token: Token[dict[str, Any]]) -> None:
    _bound.reset(token)


class BoundContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _bound.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": round(time.time(), 3), "level": record.levelname.lower(),
                "logger": record.name, "msg": record.getMessage()}
        data.update({k: v for k, v in vars(record).items() if k not in STANDARD})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in STANDARD)
        line = f"{time.strftime('%H:%M:%S')} {record.levelname:<7} {record.name}: {record.getMessage()}"
        return f"{line}  {extra}" if extra else line


def setup_logging(fmt: str = "auto", level: str = "INFO") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    handler.addFilter(BoundContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)


class ActorRunLog(Middleware):
    """One line when an actor starts and one when it ends, with the message's reference (event id,
    or environment for per-environment actors), the correlation id, outcome and duration. Only ids
    and the exception's type go in: messages carry references, and error text may quote URLs."""

    def __init__(self, *, correlation: Callable[[str], str], environment_actors: tuple[str, ...] = ()) -> None:
        self.correlation = correlation
        self.environment_actors = environment_actors
        self.running: dict[str, tuple[float, Token[dict[str, Any]]]] = {}

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        setup_logging(os.environ.get("SHIPLINE_LOG_FORMAT", "auto"))

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.running[message.message_id] = (time.monotonic(), bind(**self._context(message)))
        actor_log.info("%s started", message.actor_name)

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        started, token = self.running.pop(message.message_id, (time.monotonic(), None))
        outcome = "ok" if exception is None else f"error {type(exception).__name__}"
        actor_log.info("%s finished: %s", message.actor_name, outcome,
                       extra={"outcome": "ok" if exception is None else "error",
                              "duration_seconds": round(time.monotonic() - started, 3)})
        if token is not None:
            unbind(token)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        _, token = self.running.pop(message.message_id, (0.0, None))
        if token is not None:
            unbind(token)

    def _context(self, message: Any) -> dict[str, Any]:
        ref = str(message.args[0]) if message.args else ""
        context: dict[str, Any] = {"actor": message.actor_name, "message_id": message.message_id,
                                   "attempt": message.options.get("retries", 0) + 1}
        if message.actor_name in self.environment_actors:
            return {**context, "environment": ref}
        try:
            correlation_id = self.correlation(ref) or ref
        except Exception:  # noqa: BLE001 - a log line never fails a message
            correlation_id = ref
        return {**context, "event_id": ref, "correlation_id": correlation_id}

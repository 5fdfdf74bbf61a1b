"""Webhook senders that behave like real ones: retry connection errors and 5xx answers, and keep a
``Ledger`` of what they sent and got back (the accepted ids are counted from it, not from Shipline)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from tests.chaos.evidence import Ledger

Delivery = tuple[str, bytes, dict[str, str]]  # (path, body, headers)


def delivery_id(delivery: Delivery) -> str:
    """The id the receiver records as the delivery's: Gitea's or GitHub's header, the registry's envelope id."""
    _, body, headers = delivery
    for header in ("X-Gitea-Delivery", "X-GitHub-Delivery"):
        if header in headers:
            return headers[header]
    return str(json.loads(body)["events"][0]["id"])


def post(base_url: str, delivery: Delivery, *, ledger: Ledger | None = None, attempts: int = 600,
         client: httpx.Client | None = None) -> tuple[int, dict[str, Any]]:
    """POST until the answer is not a 5xx nor a connection error; the final (status, JSON)."""
    path, body, headers = delivery
    own = client is None
    client = client or httpx.Client(timeout=10)
    try:
        for _ in range(attempts):
            try:
                answer = client.post(f"{base_url}{path}", content=body, headers=headers)
            except httpx.HTTPError:
                if ledger is not None:
                    ledger.answer(0, {})
                time.sleep(0.1)
                continue
            data = answer.json() if answer.content else {}
            if ledger is not None:
                ledger.answer(answer.status_code, data)
            if answer.status_code < 500:
                return answer.status_code, data
            time.sleep(0.1)
        return 0, {}
    finally:
        if own:
            client.close()


def send_all(base_url: str, deliveries: Iterable[Delivery], ledger: Ledger, *, senders: int,
             on_answer: Callable[[int], None] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """Send every delivery from ``senders`` threads; ``on_answer(n)`` after the n-th final answer."""
    todo = list(deliveries)
    for d in todo:
        ledger.sent(delivery_id(d))
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def run(mine: list[Delivery]) -> None:
        with httpx.Client(timeout=10) as client:
            for d in mine:
                result = post(base_url, d, ledger=ledger, client=client)
                with lock:
                    answers.append(result)
                    count = len(answers)
                if on_answer is not None:
                    on_answer(count)

    threads = [threading.Thread(target=run, args=(todo[i::senders],)) for i in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def fake_sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]

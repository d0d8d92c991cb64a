"""Notifications of access decisions: a local JSON-lines file and/or a webhook.

In Azure the webhook is a Logic App HTTP trigger that posts to Teams or e-mail. A
notification never blocks a decision: a failing sink is retried, then counted and
reported, and the decision stands.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("rates_platform.access")


class Sink(Protocol):
    name: str

    def send(self, message: Mapping[str, Any]) -> None:
        """Deliver one message or raise."""


class JsonLinesSink:
    """Appends one JSON object per line (O_APPEND: concurrent writers do not interleave)."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: Mapping[str, Any]) -> None:
        line = (json.dumps(message, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


class WebhookSink:
    """POSTs the message as JSON (an Azure Logic App's HTTP trigger URL)."""

    name = "webhook"

    def __init__(self, url: str, timeout: float = 5) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("ACCESS_NOTIFY_WEBHOOK must be an http(s) URL")
        self.url = url
        self.timeout = timeout

    def send(self, message: Mapping[str, Any]) -> None:
        body = json.dumps(message, default=str).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        # The scheme is checked above (https, or http to loopback only).
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 # nosec B310
            response.read()


class Notifier:
    """Fans a message out to every sink, each retried; failures are counted, not raised."""

    def __init__(self, sinks: Sequence[Sink], attempts: int = 3, backoff: float = 0.2) -> None:
        self.sinks = list(sinks)
        self.attempts = attempts
        self.backoff = backoff
        self.failures: dict[str, int] = {}

    def notify(self, event: str, **fields: Any) -> None:
        message = {"at": datetime.now(UTC).isoformat(), "event": event, **fields}
        for sink in self.sinks:
            for attempt in range(1, self.attempts + 1):
                try:
                    sink.send(message)
                    break
                except Exception as exc:  # any failure of a sink is handled alike
                    if attempt == self.attempts:
                        self.failures[sink.name] = self.failures.get(sink.name, 0) + 1
                        log.warning(
                            "access.notify_failed sink=%s event=%s error=%s attempts=%d",
                            sink.name,
                            event,
                            type(exc).__name__,
                            attempt,
                        )
                    else:
                        time.sleep(self.backoff * attempt)


def notifier_from_env(env: Mapping[str, str]) -> Notifier:
    """ACCESS_NOTIFY_FILE (JSON lines) and/or ACCESS_NOTIFY_WEBHOOK (a URL)."""
    sinks: list[Sink] = []
    if env.get("ACCESS_NOTIFY_FILE"):
        sinks.append(JsonLinesSink(Path(env["ACCESS_NOTIFY_FILE"])))
    if env.get("ACCESS_NOTIFY_WEBHOOK"):
        sinks.append(WebhookSink(env["ACCESS_NOTIFY_WEBHOOK"]))
    return Notifier(sinks)

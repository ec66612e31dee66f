"""Telling people: a log line, or a Slack-compatible webhook POST. (Events are the operator's.)"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

log = logging.getLogger("gastown.notify")


def webhook(url: str, text: str, fields: dict[str, str] | None = None, timeout: float = 10.0) -> None:
    """POST ``{"text": ...}`` (what Slack, Mattermost and most chat webhooks take) to ``url``.
    The URL is a secret: it is never logged."""
    body: dict[str, Any] = {"text": text}
    if fields:
        body["attachments"] = [{"fields": [{"title": k, "value": v, "short": True} for k, v in fields.items()]}]
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    if not url.startswith(("https://", "http://")):
        raise ValueError("a webhook URL must be http(s)")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (scheme checked above)
        resp.read()

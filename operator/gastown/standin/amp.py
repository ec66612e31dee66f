"""Amp's own server (``AMP_URL``): its start-up, and where a thread begins. Not its model.

The amp CLI never calls a model API. It sends ``AMP_API_KEY`` as ``Authorization: Bearer`` to
the Amp server's internal JSON-RPC, ``POST /api/internal?<method>`` with
``{"method", "params"}``, answered ``{"ok": true, "result": ...}``. At start-up (0.0.1790142911)
it calls ``getUserInfo``, ``loadPlugins`` and ``loadSkills``. Execute mode then creates the
thread, ``POST /api/thread-actors`` ``{"executorType": "local-client", "agentMode", ...}``,
which must answer ``{"threadId", "wsToken", "ownerUserId", "threadVersion"}``; the agent loop
itself runs on the server, in a RivetKit actor the CLI reaches by WebSocket
(``GET /actors/gateway/threadActor/websocket/?rvt-...``), the CLI only running the tools it is
sent. That protocol is not played here: thread creation is answered 501, so a session ends
there, plainly. A rate limit is a 429 on thread creation; the delay goes in the body's
``retryAfterSeconds`` (the field Amp's server uses in its 429 bodies; the CLI shows the body
whole, not the ``Retry-After`` header).
"""

from __future__ import annotations

from typing import Any

from .server import Conversation, Reply, Turn

USER = {"id": "user-contract", "email": "contract@example.com", "emailVerified": True,
        "username": "contract", "features": [], "team": None}
# what the internal methods it calls at start-up answer (unknown ones answer an empty result)
_RESULTS: dict[str, Any] = {"getUserInfo": USER, "loadPlugins": [], "loadSkills": {"sources": []}}
UNPLAYED = ("the stand-in does not play Amp's thread actors (the agent loop runs on Amp's server, "
            "reached by a RivetKit WebSocket)")


class Amp:
    name = "amp"

    def __init__(self, retry_after: float | None = None):
        self.retry_after = retry_after  # what a 429's body says, in retryAfterSeconds

    def handles(self, method: str, path: str) -> bool:
        return method == "POST" and (path.startswith("/api/internal?") or path.split("?")[0] == "/api/thread-actors")

    def read(self, path: str, body: Any) -> Conversation:
        body = body if isinstance(body, dict) else {}
        thread = path.split("?")[0] == "/api/thread-actors"
        conv = Conversation(texts=[], tool_results=0, has_tools=False, model=str(body.get("agentMode") or ""))
        # the internal calls are start-up and settings; thread creation is where the model work starts
        conv.side = not thread
        conv.method = "thread-actors" if thread else path.split("?", 1)[1]  # type: ignore[attr-defined]
        return conv

    def error_body(self, status: int, message: str) -> Any:
        body: dict[str, Any] = {"error": message}
        if status == 429 and self.retry_after is not None:
            body["retryAfterSeconds"] = self.retry_after
        return body

    def reply(self, out: Reply, turn: Turn, conv: Conversation) -> None:
        method = getattr(conv, "method", "")
        if method == "thread-actors":
            out.json({"error": UNPLAYED, "code": "NOT_PLAYED"}, 501)
            return
        out.json({"ok": True, "result": _RESULTS.get(method, {})})

"""A stand-in for a model provider's API: a real HTTP server on 127.0.0.1 that plays a script.

The agent CLIs under test are real (pinned, from the npm registry); only the model is played.
Each provider's wire format is a *dialect* (Anthropic Messages, OpenAI Responses and Chat
Completions, Gemini generateContent, ...): it reads a request into a provider-neutral
``Conversation`` and writes a ``Turn`` back in the provider's own format, streamed or not.

The script is stateless: the next turn is chosen from the conversation the CLI sends (how many
tool results it carries), so a retried request gets the same answer and a resumed session
carries on where the earlier one stopped. Every request is recorded for the assertions: the
path, the headers (where the key arrived) and the body (the prompt, unaltered).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


@dataclass(frozen=True)
class Turn:
    """What the model says next: text, or one tool call (the CLI's own tool, by its name)."""

    text: str = ""
    tool: str | None = None
    input: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Conversation:
    """A request, read by its dialect."""

    texts: list[str]  # every text the client sent (system, user and assistant turns, tool output)
    tool_results: int  # how many tool results the conversation carries: the script's step
    has_tools: bool  # side requests (titles, summaries) come without tools
    model: str = ""
    stream: bool = False
    # tool results since the last user turn that carried none: a resumed conversation given a
    # new prompt starts its steps again from there
    since_prompt: int | None = None
    side: bool = False  # a start-up call (models, settings, user info): never rate limited nor held

    @property
    def step(self) -> int:
        return self.tool_results if self.since_prompt is None else self.since_prompt

    def says(self, needle: str) -> bool:
        return any(needle in t for t in self.texts)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    conversation: Conversation | None = None
    status: int = 200


class Dialect(Protocol):
    name: str

    def handles(self, method: str, path: str) -> bool: ...

    def read(self, path: str, body: Any) -> Conversation: ...

    def reply(self, out: Reply, turn: Turn, conv: Conversation) -> None: ...

    def error_body(self, status: int, message: str) -> Any: ...


Script = Callable[[Conversation], Turn]


def steps(*turns: Turn, side: str = "ok") -> Script:
    """The usual script: turn N after N tool results; requests without tools get ``side``."""

    def play(conv: Conversation) -> Turn:
        if not conv.has_tools:
            return Turn(text=side)
        return turns[min(conv.tool_results, len(turns) - 1)]

    return play


class Reply:
    """Writes a response: JSON in one piece, or server-sent events / JSON lines as a stream."""

    def __init__(self, handler: BaseHTTPRequestHandler):
        self.handler = handler
        self.started = False

    def json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.handler.send_response(status)
        self.handler.send_header("Content-Type", "application/json")
        self.handler.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.handler.send_header(k, v)
        self.handler.end_headers()
        self.handler.wfile.write(body)

    def start_stream(self, content_type: str = "text/event-stream") -> None:
        self.handler.send_response(200)
        self.handler.send_header("Content-Type", content_type)
        self.handler.send_header("Cache-Control", "no-cache")
        self.handler.send_header("Connection", "close")
        self.handler.end_headers()
        self.started = True

    def event(self, data: Any, event: str | None = None) -> None:
        """One server-sent event (``event:`` line only when given)."""
        if not self.started:
            self.start_stream()
        chunk = (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"
        self.handler.wfile.write(chunk.encode())
        self.handler.wfile.flush()

    def raw(self, text: str) -> None:
        if not self.started:
            self.start_stream()
        self.handler.wfile.write(text.encode())
        self.handler.wfile.flush()


class StandIn:
    """The server. ``script`` plays the model; ``rate_limit()`` makes it answer 429 for a while;
    ``hold()`` makes it stop answering at a given step (to kill a session in the middle)."""

    def __init__(self, dialects: list[Dialect], script: Script):
        self.dialects = dialects
        self.script = script
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._limited = 0
        self._retry_after: str | None = None
        self._hold_at: int | None = None
        self.held = threading.Event()  # set while a request is held
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # --- control ---------------------------------------------------------------------------------
    def rate_limit(self, count: int = 10**6, retry_after: float | None = 30) -> None:
        """Answer the next ``count`` model requests with 429 (and ``Retry-After`` when given)."""
        with self._lock:
            self._limited = count
            self._retry_after = None if retry_after is None else f"{retry_after:g}"

    def hold(self, step: int | None) -> None:
        """Hold (never answer, until ``hold(None)``) the first request that reaches ``step`` tool
        results; later requests are answered."""
        self._hold_at = step
        if step is None:
            self._release.set()
        else:
            self._release.clear()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def model_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.conversation is not None]

    def main_requests(self) -> list[Seen]:
        return [s for s in self.model_requests() if s.conversation and s.conversation.has_tools]

    def start(self) -> StandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin._serve(self, "GET")

            def do_POST(self) -> None:
                standin._serve(self, "POST")

            def do_PUT(self) -> None:
                standin._serve(self, "PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving ---------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = _read_chunked(handler)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        seen = Seen(method, handler.path, {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._lock:
            self.seen.append(seen)
        out = Reply(handler)
        dialect = next((d for d in self.dialects if d.handles(method, handler.path)), None)
        if dialect is None:
            seen.status = 404
            out.json({"error": {"message": f"the stand-in has no {method} {handler.path}"}}, 404)
            return
        conv = dialect.read(handler.path, body)
        seen.conversation = conv
        with self._lock:
            limited = self._limited > 0 and not conv.side
            if limited:
                self._limited -= 1
            retry_after = self._retry_after
        if limited:
            seen.status = 429
            headers = {"retry-after": retry_after} if retry_after else {}
            handler.send_response(429)
            payload = dialect.error_body(429, "Rate limit exceeded: too many requests")
            data = json.dumps(payload).encode()
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                handler.send_header(k, v)
            handler.end_headers()
            handler.wfile.write(data)
            return
        with self._lock:  # one request is held: the retries and the sessions after it are answered
            hold = self._hold_at is not None and not conv.side and conv.has_tools and conv.tool_results >= self._hold_at
            if hold:
                self._hold_at = None
        if hold:
            self.held.set()
            self._release.wait()
            return
        dialect.reply(out, self.script(conv), conv)


def _read_chunked(handler: BaseHTTPRequestHandler) -> bytes:
    out = b""
    while True:
        size = int(handler.rfile.readline().strip() or b"0", 16)
        if size == 0:
            handler.rfile.readline()
            return out
        out += handler.rfile.read(size)
        handler.rfile.readline()


def new_id(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns():x}"

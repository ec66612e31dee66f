"""The OpenAI Chat Completions API (`POST .../chat/completions`), streamed or not: copilot (BYOK).

Tool calls are ``function`` tool calls whose ``arguments`` are a JSON string; a tool result is a
``role: tool`` message. A streamed reply is ``chat.completion.chunk`` events, a last chunk with
the usage when the client asked for it (``stream_options.include_usage``), then ``[DONE]``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .server import Conversation, Reply, Turn, new_id

USAGE = {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280}


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    for part in content or []:
        if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
            out.append(part.get("text", ""))
    return out


class OpenAIChat:
    name = "openai_chat"

    def handles(self, method: str, path: str) -> bool:
        return method == "POST" and path.split("?")[0].rstrip("/").endswith("/chat/completions")

    def read(self, path: str, body: Any) -> Conversation:
        texts: list[str] = []
        results = since_prompt = 0
        for msg in body.get("messages", []):
            texts += _texts(msg.get("content"))
            for call in msg.get("tool_calls") or []:
                texts.append((call.get("function") or {}).get("arguments") or "")
            if msg.get("role") == "tool":
                results += 1
                since_prompt += 1
            elif msg.get("role") == "user":  # tool results are messages of their own here
                since_prompt = 0
        return Conversation(texts=texts, tool_results=results, has_tools=bool(body.get("tools")),
                            model=body.get("model", ""), stream=bool(body.get("stream")), since_prompt=since_prompt)

    def error_body(self, status: int, message: str) -> Any:
        kind, code = ("requests", "rate_limit_exceeded") if status == 429 else ("server_error", None)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def reply(self, out: Reply, turn: Turn, conv: Conversation) -> None:
        chat_id, created = new_id("chatcmpl-"), int(time.time())
        if turn.tool:
            call: dict[str, Any] = {"id": new_id("call_"), "type": "function",
                    "function": {"name": turn.tool, "arguments": json.dumps(turn.input)}}
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": turn.text}
            finish = "stop"
        if not conv.stream:
            out.json({"id": chat_id, "object": "chat.completion", "created": created, "model": conv.model,
                      "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                      "usage": USAGE})
            return

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> None:
            out.event({"id": chat_id, "object": "chat.completion.chunk", "created": created,
                       "model": conv.model, "choices": choices, **extra})

        if turn.tool:
            chunk([{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": call["id"], "type": "function",
                 "function": {"name": turn.tool, "arguments": ""}}]}, "finish_reason": None}])
            chunk([{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": call["function"]["arguments"]}}]},
                "finish_reason": None}])
        else:
            chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            chunk([{"index": 0, "delta": {"content": turn.text}, "finish_reason": None}])
        chunk([{"index": 0, "delta": {}, "finish_reason": finish}])
        chunk([], usage=USAGE)
        out.raw("data: [DONE]\n\n")

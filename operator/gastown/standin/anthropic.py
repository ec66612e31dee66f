"""The Anthropic Messages API (`POST /v1/messages`), streamed or not: claude, omp, pi, opencode."""

from __future__ import annotations

import json
from typing import Any

from .server import Conversation, Reply, Turn, new_id


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    for block in content or []:
        if block.get("type") == "text":
            out.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            out += _texts(block.get("content"))
        elif block.get("type") == "tool_use":
            out.append(json.dumps(block.get("input")))
    return out


class Anthropic:
    name = "anthropic"

    def handles(self, method: str, path: str) -> bool:
        return method == "POST" and path.split("?")[0].rstrip("/").endswith("/v1/messages")

    def read(self, path: str, body: Any) -> Conversation:
        texts = _texts(body.get("system"))
        results = since = 0
        for msg in body.get("messages", []):
            texts += _texts(msg.get("content"))
            content = msg.get("content")
            count = sum(1 for b in content if b.get("type") == "tool_result") if isinstance(content, list) else 0
            results += count
            since = since + count if count or msg.get("role") != "user" else 0
        return Conversation(texts=texts, tool_results=results, has_tools=bool(body.get("tools")),
                            model=body.get("model", ""), stream=bool(body.get("stream")), since_prompt=since)

    def error_body(self, status: int, message: str) -> Any:
        kind = "rate_limit_error" if status == 429 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": message}}

    def reply(self, out: Reply, turn: Turn, conv: Conversation) -> None:
        msg_id = new_id("msg_")
        usage = {"input_tokens": 1200, "output_tokens": 80}
        if turn.tool:
            block: dict[str, Any] = {"type": "tool_use", "id": new_id("toolu_"), "name": turn.tool,
                                     "input": turn.input}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": turn.text}
            stop = "end_turn"
        if not conv.stream:
            out.json({"id": msg_id, "type": "message", "role": "assistant", "model": conv.model,
                      "content": [block], "stop_reason": stop, "stop_sequence": None, "usage": usage})
            return
        out.event({"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": conv.model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}}, "message_start")
        if turn.tool:
            out.event({"type": "content_block_start", "index": 0,
                       "content_block": {**block, "input": {}}}, "content_block_start")
            out.event({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": json.dumps(turn.input)}},
                      "content_block_delta")
        else:
            out.event({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}, "content_block_start")
            out.event({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": turn.text}}, "content_block_delta")
        out.event({"type": "content_block_stop", "index": 0}, "content_block_stop")
        out.event({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                   "usage": {"output_tokens": usage["output_tokens"]}}, "message_delta")
        out.event({"type": "message_stop"}, "message_stop")

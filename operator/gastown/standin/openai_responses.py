"""The OpenAI Responses API (`POST /v1/responses`), streamed or not: codex.

codex first tries the API over a WebSocket (`GET /v1/responses` with `Upgrade: websocket`);
the stand-in declines with 426 Upgrade Required, on which codex goes straight to HTTPS, as it
does behind a proxy without WebSockets (other refusals cost it five reconnects first).

A turn's tool is a function call (``arguments``: the input as JSON) or, where the request
declares the tool as ``custom`` (codex's freeform ``apply_patch``), a custom tool call whose
``input`` is the text in ``Turn.input["input"]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .server import Conversation, Reply, Turn, new_id

RESULT_TYPES = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")


@dataclass(kw_only=True)
class ResponsesConversation(Conversation):
    tool_kinds: dict[str, str] = field(default_factory=dict)  # tool name -> "function" | "custom"
    websocket: bool = False  # the WebSocket upgrade, refused


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    for part in content or []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            out.append(part["text"])
    return out


def _item_texts(item: dict[str, Any]) -> list[str]:
    kind = item.get("type", "message")
    if kind == "message":
        return _texts(item.get("content"))
    if kind == "function_call":
        return [str(item.get("arguments", ""))]
    if kind == "custom_tool_call":
        return [str(item.get("input", ""))]
    if kind in RESULT_TYPES:
        output = item.get("output")
        return _texts(output) if not isinstance(output, dict) else _texts(output.get("content"))
    return []


def _tool_kinds(tools: list[Any]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "namespace":
            kinds.update(_tool_kinds(tool.get("tools", [])))
        elif tool.get("name"):
            kinds[tool["name"]] = tool.get("type", "function")
    return kinds


class OpenAIResponses:
    name = "openai-responses"

    def handles(self, method: str, path: str) -> bool:
        return method in ("GET", "POST") and path.split("?")[0].rstrip("/").endswith("/responses")

    def read(self, path: str, body: Any) -> Conversation:
        if not isinstance(body, dict):  # the WebSocket upgrade (a GET, no body)
            return ResponsesConversation(texts=[], tool_results=0, has_tools=False, websocket=True)
        texts = _texts(body.get("instructions"))
        items = body.get("input")
        items = [{"type": "message", "content": items}] if isinstance(items, str) else items or []
        results, kinds = 0, _tool_kinds(body.get("tools", []))
        for item in items:
            texts += _item_texts(item)
            results += item.get("type") in RESULT_TYPES
            if item.get("type") == "additional_tools":  # codex's code mode declares its tools here
                kinds.update(_tool_kinds(item.get("tools", [])))
        return ResponsesConversation(texts=texts, tool_results=results, has_tools=bool(kinds),
                                     model=body.get("model", ""), stream=bool(body.get("stream")), tool_kinds=kinds)

    def error_body(self, status: int, message: str) -> Any:
        kind, code = ("requests", "rate_limit_exceeded") if status == 429 else ("server_error", None)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def reply(self, out: Reply, turn: Turn, conv: Conversation) -> None:
        if isinstance(conv, ResponsesConversation) and conv.websocket:
            out.json({"error": {"message": "the stand-in speaks HTTPS only", "type": "invalid_request_error"}},
                     426)
            return
        kinds = conv.tool_kinds if isinstance(conv, ResponsesConversation) else {}
        resp_id = new_id("resp_")
        if turn.tool and kinds.get(turn.tool) == "custom":
            item: dict[str, Any] = {"type": "custom_tool_call", "id": new_id("ctc_"), "status": "completed",
                                    "call_id": new_id("call_"), "name": turn.tool,
                                    "input": str(turn.input.get("input", ""))}
        elif turn.tool:
            item = {"type": "function_call", "id": new_id("fc_"), "status": "completed",
                    "call_id": new_id("call_"), "name": turn.tool, "arguments": json.dumps(turn.input)}
        else:
            item = {"type": "message", "id": new_id("msg_"), "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": turn.text, "annotations": []}]}
        usage = {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 200}, "output_tokens": 80,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1280}
        response: dict[str, Any] = {"id": resp_id, "object": "response", "created_at": 0, "status": "completed",
                                    "model": conv.model, "output": [item], "usage": usage}
        if not conv.stream:
            out.json(response)
            return
        seq = iter(range(10**6))

        def event(kind: str, **data: Any) -> None:
            out.event({"type": kind, "sequence_number": next(seq), **data}, kind)

        event("response.created", response={**response, "status": "in_progress", "output": [], "usage": None})
        event("response.output_item.added", output_index=0, item={**item, "status": "in_progress"})
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": []}
            event("response.content_part.added", item_id=item["id"], output_index=0, content_index=0, part=part)
            event("response.output_text.delta", item_id=item["id"], output_index=0, content_index=0,
                  delta=turn.text)
            event("response.output_text.done", item_id=item["id"], output_index=0, content_index=0, text=turn.text)
            event("response.content_part.done", item_id=item["id"], output_index=0, content_index=0,
                  part={**part, "text": turn.text})
        elif item["type"] == "function_call":
            event("response.function_call_arguments.delta", item_id=item["id"], output_index=0,
                  delta=item["arguments"])
            event("response.function_call_arguments.done", item_id=item["id"], output_index=0,
                  arguments=item["arguments"])
        else:
            event("response.custom_tool_call_input.delta", item_id=item["id"], output_index=0, delta=item["input"])
            event("response.custom_tool_call_input.done", item_id=item["id"], output_index=0, input=item["input"])
        event("response.output_item.done", output_index=0, item=item)
        event("response.completed", response=response)

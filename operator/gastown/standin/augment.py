"""Augment's own API (the ``tenantURL`` of auggie's session JSON): auggie.

auggie talks to Augment's servers, not to a model API. It authenticates with the session's
``accessToken`` as ``Authorization: Bearer``. At start-up it calls (all POST, JSON):
``get-models`` (the models and feature flags), ``settings/get-mcp-tenant-configs``,
``settings/get-mcp-user-configs`` and ``agents/list-remote-tools``; errors it reports go to
``report-error``. The model is ``chat-stream``: the request carries the prompt and the
conversation as *nodes* (type 0 text, 1 tool result, 4 IDE state) and ``chat_history``
(earlier exchanges: ``request_message``, ``request_nodes``, ``response_text``,
``response_nodes``); the answer is JSON lines of ``{"text", "nodes", "stop_reason"}`` where a
response node of type 0 is text, 5 a tool call (``tool_use``: id, name, ``input_json``) and 10
the token usage. Stop reasons: 1 end of turn, 3 tool use requested.
"""

from __future__ import annotations

import json
from typing import Any

from .server import Conversation, Reply, Turn, new_id

MODEL = "contract-model"

# the answers auggie needs before it starts: minimal, with what it validates
_SIDE: dict[str, Any] = {
    "get-models": {"default_model": MODEL, "models": [
        {"name": MODEL, "suggested_prefix_char_count": 0, "suggested_suffix_char_count": 0}],
        "languages": [], "feature_flags": {}},
    "settings/get-mcp-tenant-configs": {"configs": []},
    "settings/get-mcp-user-configs": {"configs": []},
    "agents/list-remote-tools": {"tools": []},
    "report-error": {},
}


def _node_texts(nodes: Any) -> tuple[list[str], int]:
    texts, results = [], 0
    for node in nodes or []:
        if not isinstance(node, dict):
            continue
        if node.get("text_node"):
            texts.append(str(node["text_node"].get("content", "")))
        if node.get("tool_result_node"):
            results += 1
            texts.append(str(node["tool_result_node"].get("content", "")))
        if node.get("tool_use"):
            texts.append(str(node["tool_use"].get("input_json", "")))
        if node.get("type") == 0 and isinstance(node.get("content"), str) and node["content"]:
            texts.append(node["content"])
    return texts, results


class Augment:
    name = "augment"

    def handles(self, method: str, path: str) -> bool:
        return method == "POST" and self._endpoint(path) in (*_SIDE, "chat-stream")

    @staticmethod
    def _endpoint(path: str) -> str:
        return path.split("?")[0].strip("/")

    def read(self, path: str, body: Any) -> Conversation:
        body = body if isinstance(body, dict) else {}
        texts = [str(body.get(k) or "") for k in ("message", "user_guidelines", "workspace_guidelines")]
        results = 0
        for exchange in body.get("chat_history") or []:
            texts += [str(exchange.get("request_message") or ""), str(exchange.get("response_text") or "")]
            for key in ("request_nodes", "response_nodes"):
                more, count = _node_texts(exchange.get(key))
                texts += more
                results += count if key == "request_nodes" else 0
        more, count = _node_texts(body.get("nodes"))
        texts += more
        results += count
        conv = Conversation(texts=[t for t in texts if t], tool_results=results,
                            has_tools=bool(body.get("tool_definitions")), model=str(body.get("model") or ""),
                            stream=True)
        conv.endpoint = endpoint = self._endpoint(path)  # type: ignore[attr-defined]  # read back by getattr
        # start-up and settings calls: no model work (a server that honours it never limits them)
        conv.side = endpoint != "chat-stream"
        return conv

    def error_body(self, status: int, message: str) -> Any:
        return {"error": message}

    def reply(self, out: Reply, turn: Turn, conv: Conversation) -> None:
        endpoint = getattr(conv, "endpoint", "chat-stream")
        if endpoint != "chat-stream":
            out.json(_SIDE[endpoint])
            return
        out.start_stream("application/json")
        usage = {"id": 2, "type": 10, "content": "",
                 "token_usage": {"input_tokens": 1200, "output_tokens": 80}}
        if turn.tool:
            call = {"id": 1, "type": 5, "content": "", "tool_use": {
                "tool_use_id": new_id("toolu_"), "tool_name": turn.tool, "input_json": json.dumps(turn.input)}}
            out.raw(json.dumps({"text": "", "nodes": [call]}) + "\n")
            out.raw(json.dumps({"text": "", "nodes": [usage], "stop_reason": 3}) + "\n")
            return
        text = {"id": 1, "type": 0, "content": turn.text}
        out.raw(json.dumps({"text": turn.text, "nodes": [text]}) + "\n")
        out.raw(json.dumps({"text": "", "nodes": [usage], "stop_reason": 1}) + "\n")

"""The Gemini API (``generateContent`` / ``streamGenerateContent``, v1beta), as the Gemini CLI
(through Google's genai SDK) calls it.

A request is ``POST /v1beta/models/<model>:<method>``; the conversation is ``contents`` (roles
``user`` and ``model``) made of ``parts``: ``text``, ``functionCall`` (the model's tool call),
``functionResponse`` (the tool's result, sent back by the client). A side request that asks
for JSON (``responseMimeType``, with a schema: the CLI's model router) gets the smallest value
of its schema. ``countTokens`` and a model listing (``GET .../models``) are answered minimally,
for clients that ask (gemini 0.61 does not). Errors are Google's ``{"error": {code, message,
status, details}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .server import Conversation, Reply, Turn, new_id

_METHODS = ("generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents")


def _method(path: str) -> str:
    return path.split("?")[0].rpartition(":")[2]


def _texts(parts: Any) -> list[str]:
    out: list[str] = []
    for part in parts or []:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str) and not part.get("thought"):
            out.append(part["text"])
        elif "functionCall" in part:
            out.append(json.dumps((part["functionCall"] or {}).get("args")))
        elif "functionResponse" in part:
            out.append(json.dumps((part["functionResponse"] or {}).get("response")))
    return out


@dataclass(kw_only=True)
class GeminiConversation(Conversation):
    schema: Any = None  # a side request that wants JSON (the CLI's model router): its schema


def sample(schema: Any) -> Any:
    """The smallest value that fits a (Gemini or JSON) schema: what a side request asking for
    JSON gets, so that the CLI's own helpers (its model router) accept the answer."""
    if not isinstance(schema, dict):
        return {}
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type") or "object").lower()
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: sample(props.get(k)) for k in schema.get("required") or props}
    if kind == "array":
        return [sample(schema.get("items"))] * int(schema.get("minItems") or 0)
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return "ok"


class Gemini:
    """``retry_delay``: the seconds a 429 asks the client to wait. Google says it in the body (a
    ``google.rpc.RetryInfo`` detail and "Please retry in Ns." in the message), not in a
    ``Retry-After`` header, and the Gemini CLI reads only the body."""

    name = "gemini"

    def __init__(self, retry_delay: float | None = None):
        self.retry_delay = retry_delay

    def handles(self, method: str, path: str) -> bool:
        bare = path.split("?")[0]
        if method == "GET":  # the model listing and one model's description
            return "/models" in bare
        return method == "POST" and "/models/" in bare and _method(path) in _METHODS

    def read(self, path: str, body: Any) -> Conversation:
        body = body if isinstance(body, dict) else {}
        # countTokens wraps the request: {"contents": ...} or {"generateContentRequest": {...}}
        body = body.get("generateContentRequest") or body
        system = body.get("systemInstruction") or body.get("system_instruction") or {}
        texts = _texts(system.get("parts") if isinstance(system, dict) else None)
        # one step per answered call: a resumed gemini sends the last answer twice (same id)
        answered: set[str] = set()
        for content in body.get("contents") or []:
            parts = content.get("parts") or []
            texts += _texts(parts)
            for p in parts:
                if isinstance(p, dict) and isinstance(p.get("functionResponse"), dict):
                    answered.add(p["functionResponse"].get("id") or f"#{len(answered)}")
        results = len(answered)
        model = path.split("?")[0].rpartition("/models/")[2].partition(":")[0]
        has_tools = _method(path) in ("generateContent", "streamGenerateContent") and any(
            t.get("functionDeclarations") or t.get("function_declarations") for t in body.get("tools") or [])
        config = body.get("generationConfig") or {}
        schema = None
        if config.get("responseMimeType") == "application/json":
            schema = config.get("responseJsonSchema") or config.get("responseSchema") or {"type": "object"}
        return GeminiConversation(texts=texts, tool_results=results, has_tools=has_tools, model=model,
                                  stream=_method(path) == "streamGenerateContent", schema=schema)

    def error_body(self, status: int, message: str) -> Any:
        kind = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED",
                403: "PERMISSION_DENIED", 404: "NOT_FOUND", 503: "UNAVAILABLE"}.get(status, "INTERNAL")
        error: dict[str, Any] = {"code": status, "message": message, "status": kind}
        if status == 429 and self.retry_delay is not None:
            error["message"] = f"{message}. Please retry in {self.retry_delay:g}s."
            error["details"] = [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{self.retry_delay:g}s"}]
        return {"error": error}

    def reply(self, out: Reply, turn: Turn, conv: Conversation) -> None:
        path = out.handler.path
        if out.handler.command == "GET":
            model = {"name": "models/gemini-2.5-pro", "displayName": "stand-in", "inputTokenLimit": 1048576,
                     "outputTokenLimit": 65536,
                     "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}
            out.json(model if ":" in path or path.split("?")[0].rstrip("/").count("/models/") else
                     {"models": [model]})
            return
        method = _method(path)
        if method == "countTokens":
            out.json({"totalTokens": sum(len(t) for t in conv.texts) // 4 + 1})
            return
        if method in ("embedContent", "batchEmbedContents"):
            vector = {"values": [0.0] * 8}
            out.json({"embedding": vector} if method == "embedContent" else {"embeddings": [vector]})
            return
        if isinstance(conv, GeminiConversation) and conv.schema is not None and not turn.tool:
            turn = Turn(text=json.dumps(sample(conv.schema)))
        if turn.tool:
            part: dict[str, Any] = {"functionCall": {"name": turn.tool, "args": turn.input, "id": new_id("call_")}}
        else:
            part = {"text": turn.text}
        usage = {"promptTokenCount": 1200, "candidatesTokenCount": 80, "totalTokenCount": 1280}
        response = {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP",
                                    "index": 0}],
                    "usageMetadata": usage, "modelVersion": conv.model or "gemini-2.5-pro",
                    "responseId": new_id("resp_")}
        if not conv.stream:
            out.json(response)
            return
        if "alt=sse" in path:
            out.event(response)
        else:  # without alt=sse the stream is one JSON array, written as it grows
            out.start_stream("application/json")
            out.raw("[" + json.dumps(response) + "]")

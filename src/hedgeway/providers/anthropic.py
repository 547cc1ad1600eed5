"""Anthropic Messages API (`POST {api_base}/v1/messages`) behind the OpenAI chat interface. Requests are
translated OpenAI → Anthropic here; answers and streams Anthropic → OpenAI in `anthropic_stream`.

- `system`/`developer` messages become `system` text blocks; consecutive same-role turns are merged so
  roles alternate; a conversation not opening with a user turn gets a one-character user turn first.
- parts: `text` → text, `image_url` → image (data: URL → base64 source, http(s) → url source);
  `cache_control` on parts and tools is kept; assistant `tool_calls` → `tool_use`; `tool` → `tool_result`.
- `tools`; `tool_choice` auto/none/required/function → auto/none/any/tool; `parallel_tool_calls: false` →
  `disable_parallel_tool_use`; `max_completion_tokens`/`max_tokens` (else `settings.max_tokens`, else
  4096); `stop` → `stop_sequences`; `temperature`, `top_p`; `user` → `metadata.user_id`.
- Fields that would change the answer with no Anthropic equivalent (`n` > 1, `logprobs`, `logit_bias`,
  JSON `response_format`, audio, ...) raise InvalidRequest (400) before any upstream call; fields that
  only tune delivery or billing (`seed`, `store`, `service_tier`, `stream_options`, ...) are ignored.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import orjson

from hedgeway.errors import InvalidRequest, UnsupportedOperation, UpstreamError
from hedgeway.providers.anthropic_stream import StreamTranslator, completion, error_detail
from hedgeway.providers.base import StreamReply, check_settings, header_block, redact, upstream_failure
from hedgeway.types import ChatRequest, Deployment, UpstreamReply
from hedgeway.upstream import Pool, Response

DEFAULT_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
PLACEHOLDER_TEXT = {"type": "text", "text": "."}  # Anthropic requires the first turn to be the user's

# setting -> (check, what it must be)
SETTINGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_tokens": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
    "anthropic_version": (lambda v: isinstance(v, str) and bool(v), "a version string such as 2023-06-01"),
}

# OpenAI field -> predicate: True when the value asks for something Anthropic cannot do.
UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "n": lambda v: v not in (None, 1), "logprobs": bool, "top_logprobs": bool, "logit_bias": bool,
    "audio": lambda v: v is not None, "modalities": lambda v: bool(v) and any(m != "text" for m in v),
    "response_format": lambda v: isinstance(v, dict) and v.get("type") not in (None, "text"),
}

TOOL_CHOICE = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}


# --- content ---
def _block(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    if "cache_control" in part:  # prompt caching, as LiteLLM clients send it
        block["cache_control"] = part["cache_control"]
    return block


def _at(i: int, k: int) -> str:  # error paths only: no string building on the happy path
    return f"messages[{i}].content[{k}]"


def _text_part(part: dict[str, Any], i: int, k: int) -> dict[str, Any] | None:
    text = part.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"{_at(i, k)}.text must be a string", param=_at(i, k))
    return _block({"type": "text", "text": text}, part) if text else None


def _image_part(part: dict[str, Any], i: int, k: int) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequest(f"{_at(i, k)}.image_url.url must be a string", param=_at(i, k))
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type, _, encoding = header[5:].partition(";")
        if encoding != "base64" or not data:
            raise InvalidRequest(f"{_at(i, k)}: data URLs must be base64 (data:image/png;base64,...)",
                                 param=_at(i, k))
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise InvalidRequest(f"{_at(i, k)}: image URLs must be data: or http(s) URLs", param=_at(i, k))
    return _block({"type": "image", "source": source}, part)


PARTS: dict[str, Callable[[dict[str, Any], int, int], dict[str, Any] | None]] = {
    "text": _text_part, "image_url": _image_part,
    "refusal": lambda p, i, k: _text_part({"text": p.get("refusal")}, i, k),
}
ANY_PART, TEXT_ONLY, ASSISTANT_PARTS = frozenset(PARTS), frozenset({"text"}), frozenset({"text", "refusal"})


def _content(content: Any, i: int, allowed: frozenset[str] = ANY_PART) -> list[dict[str, Any]]:
    """OpenAI message content (string, null or parts) -> Anthropic blocks (empty texts dropped)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise InvalidRequest(f"messages[{i}].content must be a string or an array of content parts",
                             param=f"messages[{i}].content")
    blocks = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise InvalidRequest(f"{_at(i, k)}: content part type {kind!r} is not supported by Anthropic "
                                 f"deployments here (supported: {', '.join(sorted(allowed))})", param=_at(i, k))
        block = PARTS[kind](part, i, k)
        if block is not None:
            blocks.append(block)
    return blocks


# --- messages: OpenAI role -> (Anthropic role, blocks) ---
def _system(m: dict[str, Any], i: int) -> list[dict[str, Any]]:
    return _content(m.get("content"), i, TEXT_ONLY)


def _assistant(m: dict[str, Any], i: int) -> list[dict[str, Any]]:
    blocks = _content(m.get("content"), i, ASSISTANT_PARTS)
    for j, call in enumerate(m.get("tool_calls") or ()):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not call.get("id") or not fn.get("name"):
            raise InvalidRequest(f"messages[{i}].tool_calls[{j}] needs id and function.name",
                                 param=f"messages[{i}].tool_calls[{j}]")
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = None
        if not isinstance(args, dict):
            raise InvalidRequest(f"messages[{i}].tool_calls[{j}].function.arguments must be a JSON object",
                                 param=f"messages[{i}].tool_calls[{j}].function.arguments")
        blocks.append({"type": "tool_use", "id": call["id"], "name": fn["name"], "input": args})
    return blocks


def _tool(m: dict[str, Any], i: int) -> list[dict[str, Any]]:
    if not m.get("tool_call_id"):
        raise InvalidRequest(f"messages[{i}].tool_call_id is required for tool messages",
                             param=f"messages[{i}].tool_call_id")
    content = m.get("content")
    result = content if isinstance(content, str) else _content(content, i, TEXT_ONLY)
    return [{"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": result}]


ROLES: dict[str, tuple[str, Callable[[dict[str, Any], int], list[dict[str, Any]]]]] = {
    "system": ("system", _system), "developer": ("system", _system),
    "user": ("user", lambda m, i: _content(m.get("content"), i)),
    "assistant": ("assistant", _assistant), "tool": ("user", _tool),
}


def messages(openai_messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating turns starting with a user turn)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(openai_messages):
        entry = ROLES.get(m.get("role")) if isinstance(m, dict) else None
        if entry is None:
            raise InvalidRequest(f"messages[{i}].role must be one of {', '.join(ROLES)} for Anthropic "
                                 "deployments", param=f"messages[{i}].role")
        role, convert = entry
        blocks = convert(m, i)
        if role == "system":
            system.extend(blocks)
        elif turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        elif blocks:
            turns.append({"role": role, "content": blocks})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [dict(PLACEHOLDER_TEXT)]})
    return system, turns


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for j, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise InvalidRequest(f"tools[{j}]: only function tools with a name are supported by Anthropic "
                                 "deployments", param=f"tools[{j}]")
        spec = {"name": fn["name"], "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
        if fn.get("description"):
            spec["description"] = fn["description"]
        out.append(_block(spec, tool))
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in TOOL_CHOICE:
        return dict(TOOL_CHOICE[choice])
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and fn.get("name"):
        return {"type": "tool", "name": fn["name"]}
    raise InvalidRequest("tool_choice must be auto, none, required or {type: function, function: {name}}",
                         param="tool_choice")


def translate(body: dict[str, Any], model: str, max_tokens: int) -> dict[str, Any]:
    """An OpenAI chat request body -> an Anthropic Messages request body (raises InvalidRequest)."""
    for name in UNSUPPORTED.keys() & body.keys():  # usually empty: no per-field work
        if UNSUPPORTED[name](body[name]):
            raise InvalidRequest(f"'{name}' is not supported by Anthropic models ({model}); remove it or "
                                 "choose another model", param=name, code="unsupported_parameter")
    system, turns = messages(body["messages"])
    out: dict[str, Any] = {"model": model, "messages": turns,
                           "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or max_tokens}
    if system:
        out["system"] = system
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    choice = _tool_choice(body["tool_choice"]) if body.get("tool_choice") is not None else None
    if body.get("parallel_tool_calls") is False and out.get("tools") and (choice or {}).get("type") != "none":
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        out["tool_choice"] = choice
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    return out


class AnthropicProvider:
    price_namespace: ClassVar[str] = "anthropic"

    @classmethod
    def validate_settings(cls, d: Any, path: str) -> dict[str, Any]:
        check_settings(d.settings, SETTINGS, path, "anthropic")
        return {**d.settings, "default_api_base": DEFAULT_BASE}

    def __init__(self, deployment: Deployment):
        d = self.deployment = deployment
        self.pool = Pool(d.api_base or DEFAULT_BASE, name=d.id)
        # api_base is usually the origin; tolerate one that already ends in /v1
        self.path = "/messages" if self.pool.base_path.endswith("/v1") else "/v1/messages"
        lines = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "hedgeway",
                 "x-api-key": d.api_key, "anthropic-version": d.settings.get("anthropic_version", API_VERSION),
                 **d.headers}
        self.headers = header_block(lines)
        self.max_tokens = d.settings.get("max_tokens", DEFAULT_MAX_TOKENS)
        self.first_byte_timeout = d.first_byte_timeout or d.timeout

    def _redact(self, text: str) -> str:
        return redact(text, self.deployment.api_key)

    async def _post(self, body: dict[str, Any]) -> Response:
        d = self.deployment
        resp = await self.pool.request("POST", self.path, self.headers, orjson.dumps(body),
                                       self.first_byte_timeout, d.timeout)
        if resp.status == 200:
            return resp
        raw = await resp.read()
        try:
            kind, message = error_detail(orjson.loads(raw))
            text = f"{kind}: {message}"
        except orjson.JSONDecodeError:
            text = raw[:200].decode("utf-8", "replace")
        raise upstream_failure(resp.status, self._redact(text), d.id, resp.headers.get("retry-after"))

    async def chat(self, request: ChatRequest) -> UpstreamReply:
        body = translate(request.body, self.deployment.model, self.max_tokens)
        raw = await (await self._post(body)).read()
        try:
            msg = orjson.loads(raw)
            out, usage = completion(msg)
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            raise UpstreamError("upstream returned an invalid Messages response",
                                deployment=self.deployment.id) from None
        return UpstreamReply(body=out, usage=usage)

    async def stream(self, request: ChatRequest) -> StreamReply:
        body = translate(request.body, self.deployment.model, self.max_tokens)
        body["stream"] = True
        resp = await self._post(body)
        chunks = self._relay(resp, StreamTranslator(self.deployment.id, self._redact, request.include_usage))
        try:
            first = await chunks.__anext__()  # _relay raises rather than ending empty
        except BaseException:
            resp.close()
            raise
        return StreamReply(first, chunks, resp.close)

    async def _relay(self, resp: Response, tr: StreamTranslator):
        """OpenAI SSE bytes, one piece per upstream read. An upstream `error` event before anything was
        passed on is raised at once (so the fallback loop can try another deployment); after that, what
        preceded it is passed on first and the error raised next (the pipeline reports it in-band)."""
        sent = False
        async for data in resp:
            out = tr.feed(data)
            if tr.error is not None:
                if out and sent:
                    yield out
                resp.close()
                raise tr.error
            if out:
                sent = True
                yield out
        if not tr.done:
            raise UpstreamError("upstream ended the stream before message_stop", deployment=self.deployment.id)

    async def embeddings(self, body: dict[str, Any]) -> UpstreamReply:
        raise UnsupportedOperation(f"Anthropic has no embeddings API: model {self.deployment.model} "
                                   f"(deployment {self.deployment.id}) cannot serve embeddings",
                                   param="model")

    def close(self) -> None:
        self.pool.close()

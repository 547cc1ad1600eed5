"""Anthropic Messages API requests (`POST /v1/messages`) → the OpenAI chat body the pipeline runs.

`to_openai(body)` validates an Anthropic request and returns an `Inbound`: the equivalent OpenAI chat body
(handed on to `chat_request.parse_chat`) plus what translating the answer back needs. Answers are translated in
`anthropic_reply` (complete messages, errors) and `anthropic_stream` (SSE).

- `system` (string or text blocks, joined by newlines) → one system message first.
- `messages[].content`, string or blocks: text → text; image (base64 → `data:` URL, url → URL) →
  `image_url`; document (text / content sources → text, base64 PDF → OpenAI `file` part); assistant
  `tool_use` → `tool_calls` (input as a JSON string); user `tool_result` → `tool` messages placed before the
  rest of that turn (text blocks joined by newlines, `is_error` marked by an "Error: " prefix, images moved
  into the user message that follows: OpenAI tool messages carry text only); `thinking` /
  `redacted_thinking` blocks are dropped (signed by Anthropic, meaningless to other providers).
  A turn whose content is a single text part is sent as a plain string (every compatible server takes it).
- `tools` (custom tools only) → function tools (`input_schema` → `parameters`); `tool_choice`
  auto/any/tool/none → auto/required/{function}/none; `disable_parallel_tool_use` → `parallel_tool_calls:
  false`; `max_tokens` (required, as Anthropic requires it) → `max_tokens`; `stop_sequences` → `stop`;
  `temperature`, `top_p`, `stream` (streams ask for usage: `message_delta` reports it);
  `metadata.user_id` → `user`; structured output (`output_config.format` or the older `output_format`,
  `{"type": "json_schema", "schema"}`) → `response_format` json_schema (strict); Hedgeway's own `cache`
  field passes through.
- Accepted and dropped, as they tune Anthropic's own service rather than the answer's content, or have
  no OpenAI equivalent: `top_k`, `thinking` and `output_config.effort` (reasoning budgets: non-reasoning
  upstreams reject OpenAI's `reasoning_effort`), `service_tier`, `speed`, `cache_control` (top level and
  on blocks), `diagnostics`, `workspace_id`, `user_profile_id`. Any other field (server tools,
  `mcp_servers`, `container`, `inference_geo`, …) is a 400 naming it: nothing is silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import orjson

from hedgeway.errors import InvalidRequest


@dataclass(slots=True)
class Inbound:
    """A validated Anthropic request: the OpenAI chat body to run, and what rendering its answer needs."""

    body: dict[str, Any]
    model: str
    stream: bool
    stop_sequences: tuple[str, ...] = ()


def _bad(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {message}", param=path)


def _need(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise _bad(path, message)


def _obj(v: Any, path: str) -> dict[str, Any]:
    _need(isinstance(v, dict), path, "Input should be an object")
    return v


def _str(v: Any, path: str) -> str:
    _need(isinstance(v, str), path, "Input should be a valid string")
    return v


def _num(v: Any, path: str) -> float:
    _need(isinstance(v, (int, float)) and not isinstance(v, bool), path, "Input should be a valid number")
    return v


def _text_of(blocks: Any, path: str) -> str:
    """A string, or a list of text blocks joined by newlines (system prompts, tool results)."""
    if isinstance(blocks, str):
        return blocks
    _need(isinstance(blocks, list), path, "Input should be a string or a list of text blocks")
    texts = []
    for i, b in enumerate(blocks):
        b = _obj(b, f"{path}.{i}")
        _need(b.get("type") == "text", f"{path}.{i}.type", "only text blocks are accepted here")
        texts.append(_str(b.get("text"), f"{path}.{i}.text"))
    return "\n".join(texts)


class _Turn:
    """One Anthropic message being turned into OpenAI messages."""

    __slots__ = ("parts", "tool_msgs", "calls")

    def __init__(self):
        self.parts: list[dict[str, Any]] = []  # content parts of the user / assistant message
        self.tool_msgs: list[dict[str, Any]] = []  # `tool` messages (from tool_result), sent first
        self.calls: list[dict[str, Any]] = []  # assistant tool_calls


def _text(b: dict, path: str, turn: _Turn) -> None:
    turn.parts.append({"type": "text", "text": _str(b.get("text"), f"{path}.text")})


def _base64_url(src: dict, path: str) -> str:
    return f"data:{_str(src.get('media_type'), f'{path}.media_type')};base64,{_str(src.get('data'), f'{path}.data')}"


# source type -> the OpenAI content part (path names the `source` object)
IMAGE_SOURCES: dict[str, Callable[[dict, str], dict[str, Any]]] = {
    "base64": lambda src, path: {"type": "image_url", "image_url": {"url": _base64_url(src, path)}},
    "url": lambda src, path: {"type": "image_url", "image_url": {"url": _str(src.get("url"), f"{path}.url")}},
}
DOCUMENT_SOURCES: dict[str, Callable[[dict, str], dict[str, Any]]] = {
    "text": lambda src, path: {"type": "text", "text": _str(src.get("data"), f"{path}.data")},
    "content": lambda src, path: {"type": "text", "text": _text_of(src.get("content"), f"{path}.content")},
    "base64": lambda src, path: _pdf(src, path),
}


def _pdf(src: dict, path: str) -> dict[str, Any]:
    _need(src.get("media_type") == "application/pdf", f"{path}.media_type", "only application/pdf is supported")
    return {"type": "file", "file": {"filename": "document.pdf", "file_data": _base64_url(src, path)}}


def _sourced(table: dict[str, Callable[[dict, str], dict[str, Any]]], what: str):
    def convert(b: dict, path: str, turn: _Turn) -> None:
        src = _obj(b.get("source"), f"{path}.source")
        make = table.get(src.get("type"))
        _need(make is not None, f"{path}.source.type",
              f"{what} source {src.get('type')!r} is not supported (use {', '.join(table)})")
        turn.parts.append(make(src, f"{path}.source"))
    return convert


_image = _sourced(IMAGE_SOURCES, "image")
_document = _sourced(DOCUMENT_SOURCES, "document")


def _tool_result(b: dict, path: str, turn: _Turn) -> None:
    content = b.get("content", "")
    if isinstance(content, list):  # text blocks become the tool message; images join the user message after
        inner = _Turn()
        for i, block in enumerate(content):
            _convert(_obj(block, f"{path}.content.{i}"), f"{path}.content.{i}", inner, RESULT_BLOCKS)
        text = "\n".join(p["text"] for p in inner.parts if p["type"] == "text")
        turn.parts.extend(p for p in inner.parts if p["type"] != "text")
    else:
        text = _str(content, f"{path}.content")
    if b.get("is_error"):
        text = f"Error: {text}"
    turn.tool_msgs.append({"role": "tool", "tool_call_id": _str(b.get("tool_use_id"), f"{path}.tool_use_id"),
                           "content": text})


def _tool_use(b: dict, path: str, turn: _Turn) -> None:
    args = _obj(b.get("input", {}), f"{path}.input")
    turn.calls.append({"id": _str(b.get("id"), f"{path}.id"), "type": "function",
                       "function": {"name": _str(b.get("name"), f"{path}.name"),
                                    "arguments": orjson.dumps(args).decode()}})


def _skip(b: dict, path: str, turn: _Turn) -> None:
    """Thinking blocks: signed by Anthropic, meaningless to other providers; dropped."""


Converter = Callable[[dict, str, _Turn], None]
USER_BLOCKS: dict[str, Converter] = {"text": _text, "image": _image, "document": _document,
                                     "tool_result": _tool_result, "thinking": _skip, "redacted_thinking": _skip}
ASSISTANT_BLOCKS: dict[str, Converter] = {"text": _text, "tool_use": _tool_use, "thinking": _skip,
                                          "redacted_thinking": _skip}
RESULT_BLOCKS: dict[str, Converter] = {"text": _text, "image": _image, "document": _document}


def _convert(b: dict, path: str, turn: _Turn, table: dict[str, Converter]) -> None:
    conv = table.get(b.get("type"))
    if conv is None:
        raise _bad(f"{path}.type", f"content block type {b.get('type')!r} is not supported here")
    conv(b, path, turn)


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # A lone text part as a plain string: the form every OpenAI-compatible server accepts.
    return parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts


def _user(content: list, path: str) -> list[dict[str, Any]]:
    turn = _Turn()
    for i, b in enumerate(content):
        _convert(_obj(b, f"{path}.{i}"), f"{path}.{i}", turn, USER_BLOCKS)
    out = turn.tool_msgs
    if turn.parts:
        out.append({"role": "user", "content": _content(turn.parts)})
    return out


def _assistant(content: list, path: str) -> list[dict[str, Any]]:
    turn = _Turn()
    for i, b in enumerate(content):
        _convert(_obj(b, f"{path}.{i}"), f"{path}.{i}", turn, ASSISTANT_BLOCKS)
    text = "".join(p["text"] for p in turn.parts)
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    if turn.calls:
        msg["tool_calls"] = turn.calls
    elif not text:
        msg["content"] = ""
    return [msg]


ROLES = {"user": _user, "assistant": _assistant}


def _messages(v: Any) -> list[dict[str, Any]]:
    _need(isinstance(v, list) and len(v) > 0, "messages", "Field required and must be a non-empty list")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(v):
        path = f"messages.{i}"
        m = _obj(m, path)
        role = m.get("role")
        convert = ROLES.get(role)
        _need(convert is not None, f"{path}.role", "Input should be 'user' or 'assistant'")
        content = m.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        else:
            _need(isinstance(content, list), f"{path}.content", "Input should be a string or a list of blocks")
            out.extend(convert(content, f"{path}.content"))
    return out


def _tools(v: Any) -> list[dict[str, Any]]:
    _need(isinstance(v, list), "tools", "Input should be a list")
    out = []
    for i, t in enumerate(v):
        t = _obj(t, f"tools.{i}")
        _need(t.get("type", "custom") in ("custom", None), f"tools.{i}.type",
              f"server tool {t.get('type')!r} is not supported by this gateway; define a custom tool")
        fn = {"name": _str(t.get("name"), f"tools.{i}.name"),
              "parameters": _obj(t.get("input_schema"), f"tools.{i}.input_schema")}
        if t.get("description") is not None:
            fn["description"] = _str(t["description"], f"tools.{i}.description")
        if t.get("strict") is not None:
            fn["strict"] = bool(t["strict"])
        out.append({"type": "function", "function": fn})
    return out


TOOL_CHOICE: dict[str, Callable[[dict], Any]] = {
    "auto": lambda tc: "auto",
    "any": lambda tc: "required",
    "none": lambda tc: "none",
    "tool": lambda tc: {"type": "function", "function": {"name": _str(tc.get("name"), "tool_choice.name")}},
}


def _tool_choice(v: Any, out: dict[str, Any]) -> None:
    tc = _obj(v, "tool_choice")
    conv = TOOL_CHOICE.get(tc.get("type"))
    _need(conv is not None, "tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    out["tool_choice"] = conv(tc)
    if tc.get("disable_parallel_tool_use") and tc.get("type") != "none":
        out["parallel_tool_calls"] = False


def _max_tokens(v: Any, out: dict[str, Any]) -> None:
    _need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, "max_tokens",
          "Input should be an integer greater than or equal to 1")
    out["max_tokens"] = v


def _stop(v: Any, out: dict[str, Any]) -> None:
    _need(isinstance(v, list) and all(isinstance(s, str) for s in v), "stop_sequences",
          "Input should be a list of strings")
    if v:
        out["stop"] = list(v)


def _metadata(v: Any, out: dict[str, Any]) -> None:
    user = _obj(v, "metadata").get("user_id")
    if user is not None:
        out["user"] = _str(user, "metadata.user_id")


def _system(v: Any, out: dict[str, Any]) -> None:
    out["messages"].insert(0, {"role": "system", "content": _text_of(v, "system")})


def _copy_number(name: str) -> Callable[[Any, dict[str, Any]], None]:
    def copy(v: Any, out: dict[str, Any]) -> None:
        out[name] = _num(v, name)
    return copy


def _stream(v: Any, out: dict[str, Any]) -> None:
    _need(isinstance(v, bool), "stream", "Input should be a valid boolean")
    out["stream"] = v
    if v:  # the translation needs usage to report it in message_delta
        out["stream_options"] = {"include_usage": True}


def _cache(v: Any, out: dict[str, Any]) -> None:
    out["cache"] = v  # Hedgeway's per-request cache control; validated by parse_chat


def _output_format(fmt: Any, path: str, out: dict[str, Any]) -> None:
    fmt = _obj(fmt, path)
    _need(fmt.get("type") == "json_schema", f"{path}.type", "Input should be 'json_schema'")
    out["response_format"] = {"type": "json_schema", "json_schema": {
        "name": "output", "schema": _obj(fmt.get("schema"), f"{path}.schema"), "strict": True}}


def _output_config(v: Any, out: dict[str, Any]) -> None:
    fmt = _obj(v, "output_config").get("format")  # `effort` is dropped, like `thinking`
    if fmt is not None:
        _output_format(fmt, "output_config.format", out)


def _ignore(v: Any, out: dict[str, Any]) -> None:
    """Accepted and dropped (see the module docstring)."""


# Anthropic field -> how it lands in the OpenAI body. `model` and `messages` are handled first.
FIELDS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "system": _system, "max_tokens": _max_tokens, "stop_sequences": _stop, "metadata": _metadata,
    "temperature": _copy_number("temperature"), "top_p": _copy_number("top_p"), "stream": _stream,
    "tools": lambda v, out: out.__setitem__("tools", _tools(v)), "tool_choice": _tool_choice,
    "output_config": _output_config, "output_format": lambda v, out: _output_format(v, "output_format", out),
    "cache": _cache, "top_k": _ignore, "thinking": _ignore, "service_tier": _ignore, "speed": _ignore,
    "cache_control": _ignore, "diagnostics": _ignore, "workspace_id": _ignore, "user_profile_id": _ignore,
}


def to_openai(body: Any, require_max_tokens: bool = True) -> Inbound:
    """Validate an Anthropic Messages request and translate it (raises InvalidRequest naming the field).
    `require_max_tokens=False` for count_tokens, whose requests carry no max_tokens."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    _need(isinstance(model, str) and bool(model), "model", "Field required")
    _need(body.get("max_tokens") is not None or not require_max_tokens, "max_tokens", "Field required")
    out: dict[str, Any] = {"model": model, "messages": _messages(body.get("messages"))}
    for name, value in body.items():
        if name in ("model", "messages") or value is None:
            continue
        apply = FIELDS.get(name)
        if apply is None:
            raise _bad(name, "Extra inputs are not permitted (not supported by this gateway)")
        apply(value, out)
    if "tools" not in out:  # OpenAI rejects tool options without tools
        out.pop("tool_choice", None)
        out.pop("parallel_tool_calls", None)
    return Inbound(out, model, bool(out.get("stream")), tuple(out.get("stop", ())))

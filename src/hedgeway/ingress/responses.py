"""OpenAI Responses API requests (`POST /v1/responses`) → the OpenAI chat body the pipeline runs.

`parse(body, store_default)` validates a Responses request and returns an `Inbound`: its own input items
(normalised, `responses_items`), the chat fields they translate to, and what the Response object repeats.
`chat_body(inbound, context)` adds the messages: `instructions` as the system message first, then the
stored conversation (`previous_response_id`: its input and output items), then this request's input.
Answers are rendered in `responses_reply` (complete) and `responses_stream` (SSE).

- `max_output_tokens` → `max_tokens`; `temperature`, `top_p`, `user`, `parallel_tool_calls`,
  `service_tier`, `safety_identifier`, `prompt_cache_key` → the same chat fields; `text.format` json_schema /
  json_object → `response_format`; `text.verbosity` → `verbosity`; `reasoning.effort` → `reasoning_effort`
  (an OpenAI-compatible upstream receives it, and a non-reasoning model there answers 400; Anthropic and
  Gemini deployments ignore it, as for chat completions); function `tools` → chat function tools;
  `tool_choice` auto / none / required / {function} → the same; `stream` (streams ask for usage: the final
  event reports it); Hedgeway's own `cache` field passes through.
- `metadata`, `store` and `previous_response_id` stay in the gateway: echoed, stored, never sent upstream.
- What a deployment behind this gateway cannot honour is a 400 naming the field, never dropped: built-in
  tools (web_search, file_search, code_interpreter, computer_use, mcp, …), `background: true`,
  `reasoning.summary`, any `include` value, `truncation: "auto"`, `top_logprobs`, `max_tool_calls`,
  `conversation`, `prompt` templates and every other field this module does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any, Callable

from hedgeway.errors import InvalidRequest
from hedgeway.ingress.responses_items import Item, bad, field, normalise, to_messages


@dataclass(slots=True)
class Inbound:
    """A validated Responses request: its input items, the chat fields to run, what the answer repeats."""

    model: str
    items: list[Item]  # this request's own input, normalised (stored; listed by input_items)
    body: dict[str, Any]  # the chat body, without messages (see chat_body)
    echo: dict[str, Any] = dc_field(default_factory=dict)  # request settings the Response object repeats
    stream: bool = False
    store: bool = True
    previous_id: str | None = None
    instructions: str | None = None


def chat_body(inbound: Inbound, context: list[Item]) -> dict[str, Any]:
    """The chat request: instructions as its system prompt, then the stored `context` items, then the input.
    (OpenAI's rule: a previous response's instructions are not carried over.)"""
    messages = [{"role": "system", "content": inbound.instructions}] if inbound.instructions else []
    messages += to_messages(context + inbound.items)
    return {**inbound.body, "messages": messages}


def _number(name: str, lo: float, hi: float) -> Callable[[Any, Inbound], None]:
    def copy(v: Any, inb: Inbound) -> None:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            raise bad(name, f"expected a number from {lo} to {hi}")
        inb.body[name] = inb.echo[name] = v
    return copy


def _string(name: str, chat_name: str | None = None) -> Callable[[Any, Inbound], None]:
    def copy(v: Any, inb: Inbound) -> None:
        inb.echo[name] = field({name: v}, name, str, "")
        inb.body[chat_name or name] = v
    return copy


def _max_output_tokens(v: Any, inb: Inbound) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise bad("max_output_tokens", "expected an integer greater than or equal to 1")
    inb.body["max_tokens"] = inb.echo["max_output_tokens"] = v


def _instructions(v: Any, inb: Inbound) -> None:
    inb.instructions = inb.echo["instructions"] = field({"instructions": v}, "instructions", str, "")


def _tools(v: Any, inb: Inbound) -> None:
    if not isinstance(v, list):
        raise bad("tools", "expected a list")
    chat, echo = [], []
    for i, t in enumerate(v):
        path = f"tools[{i}]"
        if not isinstance(t, dict) or t.get("type") != "function":
            kind = t.get("type") if isinstance(t, dict) else t
            raise bad(f"{path}.type", f"built-in tool {kind!r} is not supported by this gateway; define a "
                                      "function tool")
        fn = {"name": field(t, "name", str, path),
              "parameters": field(t, "parameters", dict, path, required=False) or {"type": "object",
                                                                                 "properties": {}}}
        for key, kind in (("description", str), ("strict", bool)):
            if field(t, key, kind, path, required=False) is not None:
                fn[key] = t[key]
        chat.append({"type": "function", "function": fn})
        echo.append({"type": "function", **fn})
    inb.echo["tools"] = echo
    if chat:  # chat upstreams reject an empty tool list
        inb.body["tools"] = chat


def _tool_choice(v: Any, inb: Inbound) -> None:
    if v in ("auto", "none", "required"):
        inb.body["tool_choice"] = v
    elif isinstance(v, dict) and v.get("type") == "function":
        inb.body["tool_choice"] = {"type": "function", "function": {"name": field(v, "name", str, "tool_choice")}}
    else:
        raise bad("tool_choice", "expected 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": …}; "
                                 "built-in tool choices are not supported by this gateway")
    inb.echo["tool_choice"] = v


def _parallel_tool_calls(v: Any, inb: Inbound) -> None:
    inb.body["parallel_tool_calls"] = inb.echo["parallel_tool_calls"] = field({"p": v}, "p", bool, "")


def _json_schema(fmt: dict) -> dict[str, Any]:
    spec = {"name": field(fmt, "name", str, "text.format"), "schema": field(fmt, "schema", dict, "text.format")}
    for key, kind in (("strict", bool), ("description", str)):
        if field(fmt, key, kind, "text.format", required=False) is not None:
            spec[key] = fmt[key]
    return {"type": "json_schema", "json_schema": spec}


FORMATS: dict[str, Callable[[dict], dict[str, Any] | None]] = {
    "text": lambda fmt: None, "json_object": lambda fmt: {"type": "json_object"}, "json_schema": _json_schema}


def _text(v: Any, inb: Inbound) -> None:
    if not isinstance(v, dict):
        raise bad("text", "expected an object")
    fmt = v.get("format")
    if fmt is not None:
        make = FORMATS.get(fmt.get("type")) if isinstance(fmt, dict) else None
        if make is None:
            raise bad("text.format.type", "expected 'text', 'json_object' or 'json_schema'")
        rf = make(fmt)
        if rf is not None:
            inb.body["response_format"] = rf
    if v.get("verbosity") is not None:
        inb.body["verbosity"] = field(v, "verbosity", str, "text")
    inb.echo["text"] = v


def _reasoning(v: Any, inb: Inbound) -> None:
    if not isinstance(v, dict):
        raise bad("reasoning", "expected an object")
    for key in ("summary", "generate_summary"):
        if v.get(key) is not None:
            raise bad(f"reasoning.{key}", "reasoning summaries are not supported by this gateway")
    if v.get("effort") is not None:
        inb.body["reasoning_effort"] = field(v, "effort", str, "reasoning")
    inb.echo["reasoning"] = v


def _metadata(v: Any, inb: Inbound) -> None:
    if not isinstance(v, dict) or len(v) > 16 or not all(isinstance(x, str) for x in v.values()):
        raise bad("metadata", "expected an object of at most 16 string values")
    inb.echo["metadata"] = v


def _store(v: Any, inb: Inbound) -> None:
    inb.store = field({"store": v}, "store", bool, "")


def _previous(v: Any, inb: Inbound) -> None:
    inb.previous_id = inb.echo["previous_response_id"] = field({"previous_response_id": v},
                                                               "previous_response_id", str, "")


def _stream(v: Any, inb: Inbound) -> None:
    inb.stream = field({"stream": v}, "stream", bool, "")
    if inb.stream:
        inb.body["stream"] = True
        inb.body["stream_options"] = {"include_usage": True}  # the final event reports usage


def _only(name: str, allowed: Callable[[Any], bool], why: str) -> Callable[[Any, Inbound], None]:
    """A field accepted only with the values that ask for nothing this gateway cannot do."""
    def check(v: Any, inb: Inbound) -> None:
        if not allowed(v):
            raise bad(name, why)
    return check


def _accept(v: Any, inb: Inbound) -> None:
    """`stream_options`: its only option pads deltas against side channels (obfuscation); nothing to honour."""


FIELDS: dict[str, Callable[[Any, Inbound], None]] = {
    "instructions": _instructions, "max_output_tokens": _max_output_tokens,
    "temperature": _number("temperature", 0, 2), "top_p": _number("top_p", 0, 1), "tools": _tools,
    "tool_choice": _tool_choice, "parallel_tool_calls": _parallel_tool_calls, "text": _text,
    "reasoning": _reasoning, "metadata": _metadata, "store": _store, "previous_response_id": _previous,
    "stream": _stream, "stream_options": _accept, "user": _string("user"),
    "service_tier": _string("service_tier"), "safety_identifier": _string("safety_identifier"),
    "prompt_cache_key": _string("prompt_cache_key"),
    "cache": lambda v, inb: inb.body.__setitem__("cache", v),  # Hedgeway's own; checked by parse_chat
    "background": _only("background", lambda v: v is False, "background responses are not supported by this "
                                                             "gateway"),
    "include": _only("include", lambda v: v == [], "this gateway cannot provide any include value"),
    "truncation": _only("truncation", lambda v: v == "disabled", "only 'disabled' is supported: this gateway "
                                                                 "does not drop context to fit a window"),
    "top_logprobs": _only("top_logprobs", lambda v: v == 0, "logprobs are not supported on /v1/responses"),
    "max_tool_calls": _only("max_tool_calls", lambda v: False, "applies to built-in tools, which this "
                                                               "gateway does not run"),
}


def parse(body: Any, store_default: bool = True) -> Inbound:
    """Validate a Responses request and translate it (raises InvalidRequest naming the field)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model", code="missing_required_parameter")
    if body.get("input") is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    inb = Inbound(model, normalise(body["input"]), {"model": model}, store=store_default)
    for name, value in body.items():
        if name in ("model", "input") or value is None:
            continue
        apply = FIELDS.get(name)
        if apply is None:
            raise InvalidRequest(f"Unsupported parameter: '{name[:60]}' is not supported by this gateway.",
                                 param=name[:60], code="unsupported_parameter")
        apply(value, inb)
    if "tools" not in inb.body:  # chat upstreams reject tool options without tools
        inb.body.pop("tool_choice", None)
        inb.body.pop("parallel_tool_calls", None)
    return inb

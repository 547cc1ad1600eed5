"""Responses API items: validated and normalised (`normalise`), and turned into OpenAI chat messages
(`to_messages`). Items are the unit of a Responses conversation: the request's `input`, a response's
`output`, and what the response store keeps and `GET /v1/responses/{id}/input_items` lists.

`normalise(input)` takes `input` as a string or a list and returns the items as the API lists them: every
item has an `id` (the client's, else a new `msg_…` / `fc_…` / `fco_…`), `status: "completed"` and its full
type. Accepted item types (anything else is a 400 naming `input[i].type`):

- `message` (`type` may be left out): role user / system / developer with `input_text`, `input_image`
  (`image_url`; `detail` kept) and `input_file` (`file_data`) parts or a string; role assistant with
  `output_text` / `refusal` parts or a string. A Files API `file_id` or a `file_url` is a 400: Hedgeway has
  no file store to resolve them from.
- `function_call` (`call_id`, `name`, `arguments`) and `function_call_output` (`call_id`, `output` as a string
  or `input_text` parts).
- `reasoning` items are dropped (as `thinking` blocks on /v1/messages): encrypted by OpenAI for its own
  models, meaningless to any other upstream.

`to_messages(items)`: system and developer → `system`; user parts → `text` / `image_url` / `file` parts (a
lone text as a plain string); assistant text → `assistant`; `function_call` items → `tool_calls` of the
assistant message just before them (or a new one), so parallel calls stay one turn; `function_call_output`
→ a `tool` message.
"""

from __future__ import annotations

import os
from itertools import count
from typing import Any, Callable

from hedgeway.errors import InvalidRequest

Item = dict[str, Any]


_PROCESS = os.urandom(6).hex()  # item ids: this process's random prefix and a counter, unique across replicas
_items = count(1)


def new_id(prefix: str) -> str:
    """An unguessable id (`resp_…`): ids are how a tenant names its stored responses."""
    return f"{prefix}_{os.urandom(16).hex()}"


def item_id(prefix: str) -> str:
    """A unique item id (`msg_…`, `fc_…`, `fco_…`), cheaper than `new_id`: items are only ever reached
    through their response."""
    return f"{prefix}_{_PROCESS}{next(_items):012x}"


def bad(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{path}': {message}", param=path, code="invalid_value")


def field(obj: Any, key: str, kinds: type | tuple[type, ...], path: str, required: bool = True) -> Any:
    """`obj[key]` checked to be one of `kinds` (None allowed when not required); InvalidRequest naming
    `path.key` otherwise."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    v = obj.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, kinds) or isinstance(v, bool) and bool not in kinds:
        raise bad(f"{path}.{key}" if path else key, f"expected {' or '.join(k.__name__ for k in kinds)}")
    return v


# --- normalising the request's input ---
def _input_text(p: dict, path: str) -> Item:
    return {"type": "input_text", "text": field(p, "text", str, path)}


def _input_image(p: dict, path: str) -> Item:
    if p.get("file_id") is not None:
        raise bad(f"{path}.file_id", "file ids are not supported by this gateway; send image_url (a URL or a "
                                     "data: URL)")
    detail = field(p, "detail", str, path, required=False) or "auto"
    return {"type": "input_image", "image_url": field(p, "image_url", str, path), "detail": detail}


def _input_file(p: dict, path: str) -> Item:
    for name in ("file_id", "file_url"):
        if p.get(name) is not None:
            raise bad(f"{path}.{name}", f"{name} is not supported by this gateway; send file_data (base64)")
    return {"type": "input_file", "file_data": field(p, "file_data", str, path),
            "filename": field(p, "filename", str, path, required=False) or "document.pdf"}


def _output_text(p: dict, path: str) -> Item:
    return {"type": "output_text", "text": field(p, "text", str, path), "annotations": []}


def _refusal(p: dict, path: str) -> Item:
    return {"type": "refusal", "refusal": field(p, "refusal", str, path)}


PartRule = Callable[[dict, str], Item]
USER_PARTS: dict[str, PartRule] = {"input_text": _input_text, "input_image": _input_image, "input_file": _input_file}
ASSISTANT_PARTS: dict[str, PartRule] = {"output_text": _output_text, "refusal": _refusal,
                                        "input_text": lambda p, path: _output_text(p, path)}
ROLES = {"user": ("input_text", USER_PARTS), "system": ("input_text", USER_PARTS),
         "developer": ("input_text", USER_PARTS), "assistant": ("output_text", ASSISTANT_PARTS)}


def _parts(content: Any, path: str, text_type: str, rules: dict[str, PartRule]) -> list[Item]:
    if isinstance(content, str):
        return [rules[text_type]({"text": content}, path)]
    if not isinstance(content, list):
        raise bad(path, "expected a string or a list of content parts")
    out = []
    for k, p in enumerate(content):
        rule = rules.get(p.get("type")) if isinstance(p, dict) else None
        if rule is None:
            raise bad(f"{path}[{k}].type", f"content part type {p.get('type') if isinstance(p, dict) else p!r} "
                                            f"is not supported here (use {', '.join(rules)})")
        out.append(rule(p, f"{path}[{k}]"))
    return out


def _message(it: dict, path: str) -> Item:
    role = it.get("role")
    if role not in ROLES:
        raise bad(f"{path}.role", "expected 'user', 'assistant', 'system' or 'developer'")
    text_type, rules = ROLES[role]
    return {"id": it.get("id") or item_id("msg"), "type": "message", "role": role, "status": "completed",
            "content": _parts(it.get("content"), f"{path}.content", text_type, rules)}


def _function_call(it: dict, path: str) -> Item:
    return {"id": it.get("id") or item_id("fc"), "type": "function_call", "status": "completed",
            "call_id": field(it, "call_id", str, path), "name": field(it, "name", str, path),
            "arguments": field(it, "arguments", str, path)}


def _function_call_output(it: dict, path: str) -> Item:
    output = it.get("output")
    if not isinstance(output, str):
        output = _parts(output, f"{path}.output", "input_text", {"input_text": _input_text})
    return {"id": it.get("id") or item_id("fco"), "type": "function_call_output", "status": "completed",
            "call_id": field(it, "call_id", str, path), "output": output}


ITEMS: dict[str | None, Callable[[dict, str], Item] | None] = {
    "message": _message, None: _message, "function_call": _function_call,
    "function_call_output": _function_call_output, "reasoning": None,  # None: dropped (module docstring)
}


def normalise(value: Any, path: str = "input") -> list[Item]:
    """The request's `input` as a list of complete items (see the module docstring); InvalidRequest
    naming the first bad field."""
    if isinstance(value, str):
        return [_message({"role": "user", "content": value}, path)]
    if not isinstance(value, list) or not value:
        raise bad(path, "expected a string or a non-empty list of items")
    out = []
    for i, it in enumerate(value):
        here = f"{path}[{i}]"
        if not isinstance(it, dict):
            raise bad(here, "expected an object")
        kind = it.get("type")
        if kind not in ITEMS:
            raise bad(f"{here}.type", f"item type {kind!r} is not supported by this gateway (use message, "
                                      "function_call, function_call_output)")
        rule = ITEMS[kind]
        if rule is not None:
            out.append(rule(it, here))
    return out


# --- items -> chat messages ---
def _chat_part(p: Item) -> dict[str, Any]:
    kind = p["type"]
    if kind == "input_image":
        image = {"url": p["image_url"]}
        if p.get("detail") in ("low", "high", "auto"):
            image["detail"] = p["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        return {"type": "file", "file": {"filename": p["filename"], "file_data": p["file_data"]}}
    return {"type": "text", "text": p.get("text", p.get("refusal", ""))}


def _texts(parts: list[Item]) -> str:
    return "".join(p.get("text", p.get("refusal", "")) for p in parts)


def _chat_message(it: Item, out: list[dict[str, Any]]) -> None:
    role, parts = it["role"], it["content"]
    if role == "assistant":
        out.append({"role": "assistant", "content": _texts(parts)})
        return
    if role in ("system", "developer"):
        out.append({"role": "system", "content": _texts(parts)})
        return
    chat = [_chat_part(p) for p in parts]
    out.append({"role": "user", "content": chat[0]["text"] if len(chat) == 1 and chat[0]["type"] == "text" else chat})


def _chat_call(it: Item, out: list[dict[str, Any]]) -> None:
    call = {"id": it["call_id"], "type": "function", "function": {"name": it["name"], "arguments": it["arguments"]}}
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        if not last["content"]:
            last["content"] = None
    else:
        out.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _chat_output(it: Item, out: list[dict[str, Any]]) -> None:
    output = it["output"]
    out.append({"role": "tool", "tool_call_id": it["call_id"],
                "content": output if isinstance(output, str) else _texts(output)})


TO_CHAT: dict[str, Callable[[Item, list[dict[str, Any]]], None]] = {
    "message": _chat_message, "function_call": _chat_call, "function_call_output": _chat_output}


def to_messages(items: list[Item]) -> list[dict[str, Any]]:
    """Normalised items (the request's, or stored ones: a response's output items are items too) → OpenAI
    chat messages, in order."""
    out: list[dict[str, Any]] = []
    for it in items:
        TO_CHAT[it["type"]](it, out)
    return out

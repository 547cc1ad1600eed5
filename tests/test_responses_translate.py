"""The Responses translators without a socket: request fields → chat body, chat answers → Response objects,
and chat chunk streams → events whatever the byte splits."""

from __future__ import annotations

import orjson
from openai.types.responses import Response

from hedgeway.ingress.responses import chat_body, parse
from hedgeway.ingress.responses_reply import to_response
from hedgeway.ingress.responses_stream import StreamTranslator
from responses_support import deltas_agree, events


def chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
    return b"data: " + orjson.dumps({"object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish}], **extra}) + b"\n\n"


STREAM = b"".join([
    chunk({"role": "assistant", "content": ""}), chunk({"content": "Hé "}), chunk({"content": "there"}),
    chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                           "function": {"name": "f", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}),
    chunk({}, "tool_calls"),
    b'data: {"object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,'
    b'"total_tokens":13,"completion_tokens_details":{"reasoning_tokens":2}}}\n\n', b"data: [DONE]\n\n"])


def translate(data: bytes, step: int) -> bytes:
    tr = StreamTranslator(parse({"model": "m", "input": "hi", "stream": True}), "resp_1", 1)
    out = tr.start()
    for i in range(0, len(data), step):
        out += tr.feed(data[i:i + step])
    return out + tr.finish()


def test_any_byte_split_gives_the_same_events():
    whole = events(translate(STREAM, len(STREAM)))
    final = deltas_agree(whole)
    for step in (1, 7, 64):
        split = events(translate(STREAM, step))
        assert [(e["type"], e.get("delta")) for e in split] == [(e["type"], e.get("delta")) for e in whole]
        assert [o.get("content", o.get("arguments")) for o in deltas_agree(split)["output"]] == \
            [o.get("content", o.get("arguments")) for o in final["output"]]
    assert [o["type"] for o in final["output"]] == ["message", "function_call"]
    assert final["output"][0]["content"][0]["text"] == "Hé there"
    assert (final["output"][1]["call_id"], final["output"][1]["arguments"]) == ("call_9", '{"a": 1}')
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 2}


def test_a_stream_cut_without_done_still_closes_the_response():
    evs = events(translate(STREAM.replace(b"data: [DONE]\n\n", b""), 5))
    assert evs[-1]["type"] == "response.completed"


def test_an_answer_with_nothing_in_it_still_has_a_message():
    evs = events(translate(chunk({}, "stop") + b"data: [DONE]\n\n", 1000))
    assert evs[-1]["response"]["output"][0]["content"][0]["text"] == ""
    raw = orjson.dumps({"choices": [{"message": {"role": "assistant", "content": None, "refusal": "No."},
                                     "finish_reason": "stop"}]})
    out = to_response(raw, parse({"model": "m", "input": "hi"}), "resp_2", 1)
    Response.model_validate(out)
    assert out["output"][0]["content"] == [{"type": "refusal", "refusal": "No."}]


def test_request_fields_map_to_the_chat_body():
    inb = parse({"model": "m", "input": [{"role": "user", "content": "q"},
                                         {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                                         {"type": "function_call_output", "call_id": "c1", "output": "42"},
                                         {"type": "reasoning", "id": "rs_1", "summary": []}],
                 "instructions": "sys", "tools": [{"type": "function", "name": "f"}], "tool_choice": "required",
                 "parallel_tool_calls": False, "reasoning": {"effort": "low"}, "text": {"verbosity": "low"},
                 "stream": True, "metadata": {"a": "b"}, "store": False})
    body = chat_body(inb, [])
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"},
                                {"role": "assistant", "content": None, "tool_calls": [
                                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                                {"role": "tool", "tool_call_id": "c1", "content": "42"}]
    assert (body["tool_choice"], body["parallel_tool_calls"], body["reasoning_effort"], body["verbosity"]) == \
        ("required", False, "low", "low")
    assert body["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {}}}}]
    assert body["stream_options"] == {"include_usage": True} and "metadata" not in body and not inb.store
    assert [i["type"] for i in inb.items] == ["message", "function_call", "function_call_output"]  # reasoning dropped


def test_an_empty_tool_list_sends_no_tool_options():
    body = chat_body(parse({"model": "m", "input": "hi", "tools": [], "tool_choice": "auto"}), [])
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from hedgeway.sse import UsageTap


def event(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


STREAM = (event({"choices": [{"index": 0, "delta": {"content": "Hel"}}], "usage": None})
          + event({"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}], "usage": None})
          + event({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                                             "prompt_tokens_details": {"cached_tokens": 3}}})
          + b"data: [DONE]\n\n")


def relay(tap: UsageTap, stream: bytes, size: int) -> bytes:
    out = b"".join(tap.feed(stream[i:i + size]) for i in range(0, len(stream), size))
    return out + tap.flush()


def test_usage_is_read_and_kept_when_asked():
    tap = UsageTap(keep_usage=True)
    assert relay(tap, STREAM, 4096) == STREAM
    assert (tap.usage.prompt_tokens, tap.usage.completion_tokens, tap.usage.cached_tokens) == (9, 2, 3)
    assert tap.done


def test_usage_event_is_removed_when_not_asked_even_split_across_chunks():
    for size in (1, 7, 13, 64, 4096):
        tap = UsageTap(keep_usage=False)
        out = relay(tap, STREAM, size)
        assert b'"prompt_tokens"' not in out and out.endswith(b"data: [DONE]\n\n")
        assert out.count(b"data: ") == 3
        assert tap.usage.total_tokens == 11


def test_usage_on_a_content_chunk_is_never_dropped():
    stream = event({"choices": [{"index": 0, "delta": {"content": "x"}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1}}) + b"data: [DONE]\n\n"
    tap = UsageTap(keep_usage=False)
    assert relay(tap, stream, 5) == stream and tap.usage.completion_tokens == 1


def test_crlf_separated_streams_are_relayed():
    stream = STREAM.replace(b"\n\n", b"\r\n\r\n")
    tap = UsageTap(keep_usage=False)
    out = relay(tap, stream, 10)
    assert out.count(b"data: ") == 3 and tap.usage.prompt_tokens == 9


def test_frames_split_events_across_chunks_crlf_and_bound_the_tail():
    from hedgeway.sse_frames import MAX_TAIL, Frames, data_of

    f = Frames()
    assert f.feed(b"event: a\r\ndata: {\"x\":1}\r") == []  # no separator yet; a CR at the very end
    events = f.feed(b"\n\r\ndata: 2\n\n: comment\n\ndata: 3")  # the bytes as sent, each event with its end
    assert events == [b"event: a\r\ndata: {\"x\":1}\r\n\r\n", b"data: 2\n\n", b": comment\n\n"]
    assert f.rest() == b"data: 3" and f.rest() == b""
    assert data_of(b"event: a\ndata: {\"x\":1}") == b'{"x":1}'  # one space after the colon is dropped
    assert data_of(b"data: a\ndata:  b") == b"a\n b" and data_of(b": comment") is None
    big = b"data: " + b"x" * (MAX_TAIL + 1)
    assert f.feed(big) == [big] and f.rest() == b""  # no separator ever: handed on, not hoarded


@pytest.mark.parametrize("done", [b"data:[DONE]", b"event: end\ndata: [DONE]", b"id: 7\ndata:[DONE]",
                                  b": bye\r\ndata: [DONE]", b"retry: 10\rdata: [DONE]"])
def test_every_spelling_of_done_ends_the_stream(done):
    stream = STREAM.replace(b"data: [DONE]", done)
    for size in (1, 5, 4096):
        tap = UsageTap(keep_usage=False)
        out = relay(tap, stream, size)
        assert tap.done and tap.usage.total_tokens == 11 and b"prompt_tokens" not in out
    tap = UsageTap(keep_usage=False)  # the last event without its blank line still counts
    relay(tap, stream[:-2], 7)
    assert tap.done


def test_prefix_lookalikes_are_not_done():
    for event in (b"data: [DONE]x", b": data: [DONE]", b"event: data: [DONE]", b"datum: [DONE]"):
        tap = UsageTap(keep_usage=False)
        relay(tap, event + b"\n\n", 3)
        assert not tap.done, event


def test_cr_only_line_ends_split_events():
    from hedgeway.sse_frames import Frames, data_of

    f = Frames()
    chunks = [b"data: 1\r\rdata: 2\r", b"\ndata: 3\r", b"\r", b"\ndata: 4\r\n\r\n"]
    events = [e for c in chunks for e in f.feed(c)]
    assert [data_of(e) for e in events] == [b"1", b"2\n3", b"4"]  # a CR ending a chunk is a line end
    assert b"".join(events) == b"".join(chunks)


# --- differential: the same generated streams through sse_frames and an independent spec decoder ---

FIELD = st.sampled_from(["data", "event", "id", "retry", "", "dat", "datax"])
VALUE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
EOL = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw):
    lines = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["field", "field", "field", "blank", "comment", "bare"]))
        if kind == "blank":
            lines.append("")
        elif kind == "comment":
            lines.append(":" + draw(VALUE))
        elif kind == "bare":
            lines.append(draw(FIELD))
        else:
            space = draw(st.sampled_from(["", " ", "  "]))
            lines.append(draw(FIELD) + ":" + space + draw(VALUE))
    text = "".join(line + draw(EOL) for line in lines)
    data = text.encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return data, [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def reference_events(data: bytes) -> list[str]:
    from httpx_sse._decoders import SSEDecoder, SSELineDecoder

    lines, decoder = SSELineDecoder(), SSEDecoder()
    out = []
    # the whole text at once; flush() gives the line a final CR ends (and an unended one, never dispatched)
    for line in lines.decode(data.decode()) + lines.flush():
        event = decoder.decode(line)
        if event is not None:
            out.append(event.data)
    return [d for d in out if d]  # it also dispatches data-less events (with an event name or id)


@settings(max_examples=400, deadline=None)
@given(streams())
def test_event_data_agrees_with_an_independent_spec_decoder(stream):
    from hedgeway.sse_frames import Frames, data_of

    whole, pieces = stream
    frames = Frames()
    events = [e for piece in pieces for e in frames.feed(piece)]
    if whole.endswith(b"\r"):  # the stream ends: a CR held back as possibly half a CRLF is a line end
        events += frames.feed(b"\n")
        whole += b"\n"
    assert [d.decode() for d in map(data_of, events) if d] == reference_events(whole)
    assert b"".join(events) + frames.rest() == whole  # the bytes as sent, nothing lost or changed

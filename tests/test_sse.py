import orjson

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
    assert f.feed(b"\n\r\ndata: 2\n\n: comment\n\ndata: 3") == [b"event: a\ndata: {\"x\":1}", b"data: 2",
                                                                  b": comment"]
    assert f.rest() == b"data: 3" and f.rest() == b""
    assert data_of(b"event: a\ndata: {\"x\":1}") == b' {"x":1}'
    assert data_of(b"data: a\ndata: b") == b" a\n b" and data_of(b": comment") is None
    big = b"data: " + b"x" * (MAX_TAIL + 1)
    assert f.feed(big) == [big] and f.rest() == b""  # no separator ever: handed on, not hoarded

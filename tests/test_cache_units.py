"""Cache building blocks: canonical keys, LRU/TTL bounds, SSE assemble/replay, config errors."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgeway.cache.backends import MemoryBackend
from hedgeway.cache.config import CacheIn, ModelPolicy
from hedgeway.cache.entry import Entry
from hedgeway.cache.keys import exact_key, semantic_parts, tenant
from hedgeway.cache.stream import assemble, replay
from hedgeway.config import from_dict
from hedgeway.errors import ConfigError
from hedgeway.types import ChatRequest, Principal, Usage


def req(**body):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
    return ChatRequest(model=body["model"], body=body)


def test_exact_key_ignores_transport_fields_and_key_order():
    a = req(temperature=0, stream=True, stream_options={"include_usage": True}, user="u1")
    b = ChatRequest(model="m", body={"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"})
    assert exact_key("t", a) == exact_key("t", b)
    for change in ({"temperature": 0.1}, {"seed": 1}, {"max_tokens": 5}, {"top_p": 0.5}, {"stop": ["x"]},
                   {"n": 2}, {"tools": [{"type": "function", "function": {"name": "f"}}]}, {"tool_choice": "none"},
                   {"response_format": {"type": "json_object"}}):
        assert exact_key("t", req(**{"temperature": 0, **change})) != exact_key("t", b), change
    assert exact_key("t2", b) != exact_key("t", b)
    assert tenant(Principal("k1", team="x")) == tenant(Principal("k2", team="x")) != tenant(Principal("k1"))


def test_fingerprint_is_the_context_without_the_last_user_turn():
    sys = {"role": "system", "content": "S"}
    a = req(messages=[sys, {"role": "user", "content": "one"}])
    b = req(messages=[sys, {"role": "user", "content": "two"}])
    c = req(messages=[{"role": "system", "content": "T"}, {"role": "user", "content": "one"}])
    assert semantic_parts("t", a)[0] == semantic_parts("t", b)[0] != semantic_parts("t", c)[0]
    assert semantic_parts("t", a)[1] == "one"
    assert semantic_parts("t", req(temperature=0.2))[0] != semantic_parts("t", req())[0]
    # the numbers of the last turn, in order, are context too
    num = lambda text: semantic_parts("t", req(messages=[{"role": "user", "content": text}]))[0]  # noqa: E731
    assert num("account 17, please") == num("the account 17") != num("account 42") != num("account 1.7")
    assert num("3 of 5") != num("5 of 3") and num("no numbers") == num("none at all")
    # a tool/assistant continuation or an image turn has no semantic form
    assert semantic_parts("t", req(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])) is None
    assert semantic_parts("t", req(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])) is None


def entry(text="x"):
    return Entry(b'{"choices":[{"message":{"content":"%s"}}]}' % text.encode(), Usage(3, 4), Decimal("0.01"))


def test_memory_backend_lru_ttl_and_bucket_search():
    async def go():
        be = MemoryBackend(max_entries=2)
        v1, v2 = np.array([1, 0], np.float32), np.array([0, 1], np.float32)
        await be.put("a", entry("a"), 60, "B", v1)
        await be.put("b", entry("b"), 60, "B", v2)
        assert (await be.get("a")).body == entry("a").body  # a is now most recent
        await be.put("c", entry("c"), 60, None, None)  # evicts b (least recently used)
        assert await be.get("b") is None and len(be) == 2
        assert await be.search("B", v2, 0.5) is None  # b's vector went with it
        hit, sim = await be.search("B", np.array([0.8, 0.6], np.float32), 0.7)
        assert hit.body == entry("a").body and sim == pytest.approx(0.8)
        assert await be.search("B", np.array([0.6, 0.8], np.float32), 0.7) is None  # below threshold
        assert await be.search("other", v1, 0.1) is None
        await be.put("d", entry("d"), 0.05, "B", v1)
        await asyncio.sleep(0.06)
        assert await be.get("d") is None
    asyncio.run(go())


STREAM = [b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
          b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\ndata: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}\n\n',
          b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"f","arguments":"{\\"a\\""}}]},"finish_reason":null}]}\n\n',
          b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":null}]}\n\n',
          b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
          b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\ndata: [DONE]\n\n']


def test_stream_assembles_to_a_completion_and_replays_back():
    import orjson
    body = orjson.loads(assemble(STREAM))
    msg = body["choices"][0]["message"]
    assert msg["content"] == "Hello" and msg["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert body["usage"]["total_tokens"] == 5 and body["object"] == "chat.completion"
    assert assemble(STREAM[:3]) is None  # unfinished: not an answer

    async def collect(include_usage):
        return [c async for c in replay(orjson.dumps(body), include_usage)]
    events = asyncio.run(collect(True))
    assert events[-1] == b"data: [DONE]\n\n" and b'"usage":{"prompt_tokens":3' in events[-2]
    assert orjson.loads(assemble(events)) == body  # replay ∘ assemble is the identity
    assert not any(b'"usage":{' in e for e in asyncio.run(collect(False)))


def test_config_names_the_bad_field_and_per_model_policy():
    with pytest.raises(ConfigError, match=r"cache\.threshold"):
        from_dict({"cache": {"threshold": 1.5}, "models": [{"name": "m", "deployments": [{"provider": "simulated", "model": "x"}]}]})
    with pytest.raises(ConfigError, match=r"cache\.models\.m\.tll"):
        from_dict({"cache": {"models": {"m": {"tll": 5}}}, "models": [{"name": "m", "deployments": [{"provider": "simulated", "model": "x"}]}]})
    cfg = CacheIn(enabled=True, threshold=0.9, models={"m": {"threshold": 0.99, "semantic": False}})
    p, q = ModelPolicy(cfg, "m"), ModelPolicy(cfg, "other")
    assert (p.threshold, p.semantic, p.enabled, p.ttl) == (0.99, False, True, 3600)
    assert (q.threshold, q.semantic) == (0.9, True)


def test_memory_backend_snapshot_survives_a_restart(tmp_path):
    path = str(tmp_path / "cache.db")

    async def go():
        be = MemoryBackend(10, path)
        await be.put("a", entry("a"), 60, "B", np.array([1, 0], np.float32))
        await be.put("gone", entry("g"), 0.01, None, None)
        await be.put("b", entry("b"), 60, None, None)
        await asyncio.sleep(0.02)
        await be.close()
        again = MemoryBackend(10, path)
        assert list(again.entries) == ["a", "b"]  # LRU order kept, the expired entry dropped
        assert (await again.get("b")).body == entry("b").body and await again.get("gone") is None
        hit, sim = await again.search("B", np.array([1, 0], np.float32), 0.9)
        assert hit.body == entry("a").body and sim == pytest.approx(1.0)
    asyncio.run(go())


def test_large_bucket_switches_to_hnsw_and_agrees_with_exact_search(monkeypatch):
    pytest.importorskip("onnxruntime")  # first: usearch loaded before onnxruntime crashes its import
    pytest.importorskip("usearch")
    from hedgeway.cache import entry as entry_mod
    monkeypatch.setattr(entry_mod, "ANN_MIN", 200)
    rng = np.random.default_rng(1)
    v = rng.standard_normal((400, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    small = entry_mod.Bucket(ann=False)  # exact search at any size
    for i in range(400):
        small.add(f"k{i}", v[i])
    assert small._ann is None and small.candidates(v[3], 0.99)[0][0] == "k3"
    b = entry_mod.Bucket(ann=True)
    release = threading.Event()
    real = entry_mod._in_background
    monkeypatch.setattr(entry_mod, "_in_background", lambda fn: real(lambda: (release.wait(10), fn())[1]))
    for i in range(300):
        b.add(f"k{i}", v[i])
    # the index is being built from the first 200 on the worker thread: meanwhile search is exact...
    assert b._ann is None and b._building is not None and b.candidates(v[250], 0.99)[0][0] == "k250"
    b.remove("k7")  # ...and changes made during the build
    b.add("k8", v[9])  # a replaced vector
    for i in range(300, 400):
        b.add(f"k{i}", v[i])
    release.set()
    b.ready(10)
    # ...are applied to the index when it is adopted
    assert b._ann is not None and len(b._ann) == 399 and sorted(b._ids) == sorted(b.vectors)
    assert [k for k, _ in b.candidates(v[7], 0.99)] == []  # removed from the index too
    assert b.candidates(v[9], 0.99)[0][1] == pytest.approx(1.0, abs=1e-4)
    assert "k8" in [k for k, _ in b.candidates(v[9], 0.99)] and b.candidates(v[8], 0.99) == []
    for i in (0, 123, 399):
        (k, sim), *_ = b.candidates(v[i], 0.99)
        assert k == f"k{i}" and sim == pytest.approx(1.0, abs=1e-4)
    b.remove("k0")  # once adopted, the index is updated in place
    assert len(b._ann) == 398 and b.candidates(v[0], 0.99) == []
    q = v[5] + 0.3 * v[6]
    q /= np.linalg.norm(q)
    (k, sim), *_ = b.candidates(q, 0.5)
    # the half-precision index only proposes candidates: the similarity is exact search's, to the float32 bit
    assert k == "k5" and sim == float(v[5] @ q) and b.candidates(q, 0.999) == []
    assert b._ann.dtype.name == "F16"


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=400), usage=st.tuples(*[st.integers(0, 10**9)] * 4),
       cost=st.decimals(min_value=0, max_value=10**6, allow_nan=False, allow_infinity=False, places=12))
def test_a_stored_entry_reads_back_whole_in_either_format(body, usage, cost):
    """Any body (newlines, spaces, bytes that are not UTF-8) comes back byte for byte with its usage and exact
    cost; an entry in the earlier JSON form (a rolling upgrade, a snapshot) still reads."""
    entry = Entry(body, Usage(*usage), cost)
    assert Entry.loads(entry.dumps()) == entry
    text = body.decode("utf-8", "replace")
    legacy = orjson.dumps({"body": text, "cost": str(cost), "usage": list(usage)})
    assert Entry.loads(legacy) == Entry(text.encode(), Usage(*usage), cost)

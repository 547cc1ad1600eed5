"""The response cache end to end: the official `openai` SDK against a real gateway in front of the fake
upstream; upstream call counts prove hits, the ledger proves what was saved, and wrong-hit guards
(other tenant, system prompt, model, temperature) must miss."""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np
import openai
import pytest
from conftest import MASTER, gateway_config, records

from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.keys import KeyStore
from hedgeway.keys.schema import KeyCreate, OwnerCreate, parse

pytest.importorskip("onnxruntime")

CACHE = {"enabled": True, "threshold": 0.9, "max_temperature": 1.0,
         "models": {"nocache": {"enabled": False}}}


def config(upstream, ledger_url, **cache):
    cfg = gateway_config(upstream.base_url, ledger_url, cache={**CACHE, **cache})
    dep = {"provider": "openai", "model": "ok-mini", "api_base": upstream.base_url, "api_key": "sk-x",
           "price": {"input": "0.15", "output": "0.60"}}
    cfg["models"] += [{"name": "gpt-4o", "deployments": [dep]}, {"name": "nocache", "deployments": [dep]}]
    return from_dict(cfg)


@pytest.fixture()
def gw(upstream, ledger_url):
    with BackgroundGateway(config(upstream, ledger_url)) as g:
        yield g


def sdk(gw, key=MASTER):
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=20)


def ask(client, text, model="gpt-4o-mini", system=None, **kw):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, **kw)
    return raw.headers.get("x-hedgeway-cache"), raw.headers, raw.parse()


def settle():
    time.sleep(0.15)  # stores run after the response, as background tasks


def test_exact_hit_skips_upstream_and_ledger_records_saving(gw, upstream, ledger_url):
    c = sdk(gw)
    before = upstream.calls["ok-mini"]
    status, _, first = ask(c, "exact-1: what is the boiling point of water?", temperature=0)
    settle()
    status2, headers, second = ask(c, "exact-1: what is the boiling point of water?", temperature=0)
    assert (status, status2) == ("miss", "hit-exact")
    assert headers["x-hedgeway-deployment"] == "cache"
    assert upstream.calls["ok-mini"] - before == 1
    assert second.choices[0].message.content == first.choices[0].message.content
    rows = sorted(records(ledger_url, 2), key=lambda r: r.ts)
    assert [r.cache for r in rows] == ["miss", "hit-exact"]
    assert rows[0].cost > 0 and rows[1].cost == 0 and rows[1].saved == rows[0].cost
    # 8 uncached + 4 cached prompt tokens, 5 completion: 8×0.15 + 4×0.075 + 5×0.60 per M
    assert rows[0].cost == Decimal("0.0000045")


def test_semantic_hit_with_similarity_header(gw, upstream):
    c = sdk(gw)
    before = upstream.calls["ok-mini"]
    assert ask(c, "How do I reset my password?", temperature=0)[0] == "miss"
    settle()
    status, headers, body = ask(c, "How can I reset my password?", temperature=0)
    assert status == "hit-semantic"
    assert 0.9 <= float(headers["x-hedgeway-cache-similarity"]) < 1.0
    assert body.choices[0].message.content == "echo: How do I reset my password?"
    assert ask(c, "What is the capital of France?", temperature=0)[0] == "miss"
    assert upstream.calls["ok-mini"] - before == 2


def test_questions_that_differ_only_in_their_numbers_never_share_an_answer(gw, upstream):
    c = sdk(gw)
    assert ask(c, "How do I reset the password of account 17?", temperature=0)[0] == "miss"
    settle()
    assert ask(c, "how do i reset the password of account 17", temperature=0)[0] == "hit-semantic"
    assert ask(c, "How do I reset the password of account 42?", temperature=0)[0] == "miss"  # ≈ 0.98 cosine
    assert ask(c, "Refund 3 of the 5 orders", temperature=0)[0] == "miss"
    settle()
    assert ask(c, "Refund 5 of the 3 orders", temperature=0)[0] == "miss"  # same numbers, other order


def test_prompts_longer_than_the_embedder_reads_are_cached_exactly_only(gw, upstream):
    # a long fixed instruction with the question at the end: MiniLM reads 256 tokens, so a truncated
    # vector of each would be identical (cosine 1.0) and the second question would get the first's answer
    rules = " ".join(f"Rule {i}: answer politely, cite the handbook and never guess." for i in range(40))
    c = sdk(gw)
    first, second = f"{rules}\nQuestion: how do I reset my password?", f"{rules}\nQuestion: can I get a refund?"
    before = upstream.calls["ok-mini"]
    assert ask(c, first, temperature=0)[0] == "miss"
    settle()
    assert ask(c, second, temperature=0)[0] == "miss"
    assert ask(c, first, temperature=0)[0] == "hit-exact"
    assert upstream.calls["ok-mini"] - before == 2  # both questions answered upstream, the repeat not


def test_wrong_hit_guards_miss(gw, upstream, ledger_url):
    store = KeyStore(ledger_url)
    store.migrate()
    for t in ("red", "blue"):
        store.create_owner("teams", parse(OwnerCreate, {"id": t}))
    red = store.create_key(parse(KeyCreate, {"team": "red"}))[1]
    blue = store.create_key(parse(KeyCreate, {"team": "blue"}))[1]
    red2 = store.create_key(parse(KeyCreate, {"team": "red"}))[1]
    store.close()
    time.sleep(0.6)  # the key ring polls
    q = "guard: how many legs does a spider have?"
    assert ask(sdk(gw, red), q, system="Be brief.", temperature=0)[0] == "miss"
    settle()
    assert ask(sdk(gw, red2), q, system="Be brief.", temperature=0)[0] == "hit-exact"  # same team shares
    assert ask(sdk(gw, blue), q, system="Be brief.", temperature=0)[0] == "miss"  # other tenant
    assert ask(sdk(gw, red), q, system="Answer in French.", temperature=0)[0] == "miss"  # system prompt
    assert ask(sdk(gw, red), q, model="gpt-4o", system="Be brief.", temperature=0)[0] == "miss"  # model
    assert ask(sdk(gw, red), q, system="Be brief.", temperature=0.5)[0] == "miss"  # sampling params
    assert ask(sdk(gw, red), q, system="Be brief.", temperature=0, max_tokens=7)[0] == "miss"
    # a paraphrase in the same context hits; above max_temperature it may not
    para = "guard: how many legs do spiders have?"
    assert ask(sdk(gw, red), para, system="Be brief.", temperature=0)[0] == "hit-semantic"
    assert ask(sdk(gw, red), q, system="Be brief.", temperature=1.5)[0] == "miss"
    settle()
    assert ask(sdk(gw, red), para, system="Be brief.", temperature=1.5)[0] == "miss"  # exact only above bound
    assert ask(sdk(gw, red), q, system="Be brief.", temperature=1.5)[0] == "hit-exact"


def test_stream_is_replayed_as_sse_from_a_plain_answer_and_vice_versa(gw, upstream):
    c = sdk(gw)
    before = upstream.calls["ok-mini"]
    _, _, plain = ask(c, "stream-1: name three primary colours", temperature=0)
    settle()
    raw = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream-1: name three primary colours"}],
        temperature=0, stream=True, stream_options={"include_usage": True})
    assert raw.headers["x-hedgeway-cache"] == "hit-exact"
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == 12 and chunks[-1].choices == []
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    # a streamed miss is stored and serves a plain request
    stream = c.chat.completions.create(model="gpt-4o-mini", stream=True, temperature=0,
                                       messages=[{"role": "user", "content": "stream-2: say hi"}])
    streamed = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    settle()
    status, _, body = ask(c, "stream-2: say hi", temperature=0)
    assert status == "hit-exact" and body.choices[0].message.content == streamed
    assert upstream.calls["ok-mini"] - before == 2


def test_per_request_control_and_per_model_settings(gw, upstream):
    c = sdk(gw)
    before = upstream.calls["ok-mini"]
    q = "ctl-1: what is two plus two?"
    assert ask(c, q, temperature=0, extra_body={"cache": {"no_store": True}})[0] == "miss"
    settle()
    assert ask(c, q, temperature=0)[0] == "miss"  # nothing was stored
    settle()
    assert ask(c, q, temperature=0, extra_headers={"Cache-Control": "no-cache"})[0] == "bypass"
    assert ask(c, q, temperature=0, extra_body={"cache": {"no_cache": True}})[0] == "bypass"
    assert ask(c, q, temperature=0)[0] == "hit-exact"
    assert ask(c, "ctl-2", model="nocache")[0] == "bypass"
    assert ask(c, "ctl-2", model="nocache")[0] == "bypass"
    assert upstream.calls["ok-mini"] - before == 6
    # a per-request TTL expires the entry
    assert ask(c, "ctl-3: ttl", temperature=0, extra_body={"cache": {"ttl": 0.3}})[0] == "miss"
    settle()
    assert ask(c, "ctl-3: ttl", temperature=0)[0] == "hit-exact"
    time.sleep(0.35)
    assert ask(c, "ctl-3: ttl", temperature=0)[0] == "miss"


def test_openai_embedder_calls_the_configured_embeddings_deployment(upstream, ledger_url):
    cfg = gateway_config(upstream.base_url, ledger_url,
                         cache={"enabled": True, "embedder": "openai", "embedding_model": "embedder"})
    cfg["models"].append({"name": "embedder", "deployments": [
        {"provider": "openai", "model": "ok-embed", "api_base": upstream.base_url, "api_key": "sk-x"}]})
    with BackgroundGateway(from_dict(cfg)) as g:
        c = sdk(g)
        before = upstream.calls["ok-embed"]
        assert ask(c, "emb-1: first question", temperature=0)[0] == "miss"
        assert upstream.calls["ok-embed"] == before  # an empty bucket: nothing to compare with, nothing embedded
        settle()
        # one call embeds the query and the entry stored without a vector; the fake gives input i the
        # vector (0.1·(i+1), 0.2, 0.3), so any question in the same context is a neighbour (cosine 0.972)
        a, b = np.array([0.1, 0.2, 0.3]), np.array([0.2, 0.2, 0.3])
        cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        status, headers, body = ask(c, "emb-1: an unrelated question", temperature=0)
        assert status == "hit-semantic" and float(headers["x-hedgeway-cache-similarity"]) == pytest.approx(cos, abs=1e-4)
        assert body.choices[0].message.content == "echo: emb-1: first question"
        assert upstream.calls["ok-embed"] - before == 1
        assert upstream.requests[-1]["input"] == ["emb-1: an unrelated question", "emb-1: first question"]
        assert ask(c, "emb-1: a third one", temperature=0)[0] == "hit-semantic"
        assert upstream.requests[-1]["input"] == ["emb-1: a third one"]  # the first entry's vector is kept


def test_unknown_embedder_is_a_config_error_naming_the_field(upstream, ledger_url):
    from hedgeway.errors import ConfigError

    with pytest.raises(ConfigError, match=r"cache\.embedder.*unknown embedder 'bert'"):
        config(upstream, ledger_url, embedder="bert")
    with pytest.raises(ConfigError, match="needs embedding_model"):
        config(upstream, ledger_url, embedder="openai")


def test_broken_streams_and_errors_are_not_stored_and_stream_hits_are_billed_as_saved(gw, upstream, ledger_url):
    c = sdk(gw)

    def cut():
        raw = c.chat.completions.with_raw_response.create(
            model="cut", stream=True, temperature=0, messages=[{"role": "user", "content": "cut: two words"}])
        status = raw.headers["x-hedgeway-cache"]
        try:
            list(raw.parse())
        except openai.APIError:
            pass
        return status

    assert cut() == "miss"
    settle()
    assert cut() == "miss"  # the interrupted answer was not kept
    with pytest.raises(openai.BadRequestError):
        ask(c, "bad: request", model="bad")
    settle()
    with pytest.raises(openai.BadRequestError):
        ask(c, "bad: request", model="bad")  # an error is never served from cache
    ask(c, "billed: hello", temperature=0)
    settle()
    chunks = list(c.chat.completions.create(model="gpt-4o-mini", stream=True, temperature=0,
                                            messages=[{"role": "user", "content": "billed: hello"}]))
    assert chunks
    rows = [r for r in records(ledger_url, 6) if r.model_name == "gpt-4o-mini"]
    hit = next(r for r in rows if r.cache == "hit-exact")
    assert hit.stream and hit.cost == 0 and hit.saved == Decimal("0.0000045") and hit.attempts == 0

"""Hedgeway in front of a real self-hosted model: llama.cpp's OpenAI-compatible server with SmolLM2-135M
(hedgeway.selfhost), one slot, one thread. What fakes never show: its streams carry no usage, its chat
template adds prompt tokens, and past its one slot it sends empty streams — so the gateway queues.

Skipped when the server is not installed, except in CI (CI=true), where that is a failure: `.ci/run`
installs it (see README, "Self-hosted models")."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import yaml

from conftest import MASTER, records
from hedgeway.capacity import one_stream
from hedgeway.cli import main
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.providers import PROVIDERS
from hedgeway.selfhost import ALIAS, LlamaServer, model_path
from hedgeway.types import ChatRequest

DEP = "tiny/openai/smollm2"
HI = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="session")
def llama(tmp_path_factory):
    try:
        model_path()
    except LookupError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the self-hosted model is required in CI: {exc}")
        pytest.skip(str(exc))
    with LlamaServer(threads=1, log=tmp_path_factory.mktemp("llama") / "server.log") as server:
        yield server


def config(base_url: str, ledger_url: str) -> dict:
    return {"auth": {"master_key": MASTER}, "ledger": {"url": ledger_url, "flush_interval": 0.05},
            "routing": {"num_retries": 0},
            "models": [{"name": "tiny", "deployments": [{
                "provider": "openai", "model": ALIAS, "api_base": base_url, "timeout": 120,
                "price": {"gpu_hour": "1.20", "tokens_per_second": 1500},
                "max_concurrency": 1, "queue_timeout": 120}]}]}


@pytest.fixture()
def gw(llama, ledger_url):
    with BackgroundGateway(from_dict(config(llama.base_url, ledger_url))) as gateway:
        yield gateway


@pytest.fixture()
def client(gw):
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0, timeout=120)


def test_chat_and_stream_through_the_gateway(client, ledger_url):
    reply = client.chat.completions.create(model="tiny", messages=HI, max_tokens=24, temperature=0)
    assert reply.choices[0].message.content.strip() and reply.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model="tiny", messages=HI, max_tokens=24, temperature=0,
                                                 stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-1].choices[0].finish_reason in ("stop", "length")
    chat, stream = records(ledger_url, 2)
    assert (chat.status, chat.stream, stream.status, stream.stream) == (200, False, 200, True)
    assert chat.completion_tokens > 0 and chat.cost > 0


def test_a_prompt_over_the_context_is_a_400_passed_through(client):
    long = " ".join(["lighthouse"] * 3000)  # well over SmolLM2's 2,048-token context
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": long}], max_tokens=8)
    assert exc.value.status_code == 400 and "context" in str(exc.value).lower()


def _gauge(base_url: str, name: str) -> int:
    text = urllib.request.urlopen(base_url.replace("/v1", "/metrics"), timeout=5).read().decode()
    return int(re.search(rf'^{name}\{{deployment="{re.escape(DEP)}"\}} (\d+)$', text, re.M).group(1))


def _stream(client: openai.OpenAI) -> tuple[str, str | None]:
    out = client.chat.completions.create(model="tiny", messages=HI, max_tokens=48, temperature=0, stream=True)
    chunks = [c for c in out if c.choices]
    return "".join(c.choices[0].delta.content or "" for c in chunks), chunks[-1].choices[0].finish_reason


def test_six_concurrent_streams_queue_for_the_one_slot_and_all_come_back_whole(gw, client, ledger_url):
    busy, seen = threading.Event(), []

    def sample():
        while busy.is_set():
            seen.append((_gauge(gw.base_url, "llm_queue_depth"), _gauge(gw.base_url, "hedgeway_inflight_requests")))
            time.sleep(0.02)
    busy.set()
    with ThreadPoolExecutor(7) as pool:
        sampler = pool.submit(sample)
        results = list(pool.map(lambda _: _stream(client), range(6)))
        busy.clear()
        sampler.result()
    assert all(text.strip() and finish in ("stop", "length") for text, finish in results), results
    waiting = [w for w, _ in seen]
    assert 1 <= max(waiting) <= 5  # those waiting for the slot, never the one in flight
    assert all(f <= 1 for _, f in seen)
    rows = records(ledger_url, 6)
    assert len(rows) == 6 and all(r.stream and r.status == 200 and r.error_type is None for r in rows)


def test_usage_less_streams_are_priced_and_measured_for_the_planner(gw, client, ledger_url, tmp_path, capsys):
    with ThreadPoolExecutor(4) as pool:  # through the queue, one at a time at the server
        assert all(text.strip() for text, _ in pool.map(lambda _: _stream(client), range(4)))
    rows = records(ledger_url, 4)
    # llama.cpp's streams carry no usage: each is priced on an offline token estimate
    assert len(rows) == 4 and all(r.completion_tokens > 0 and r.cost > 0 for r in rows)
    # the ledger's decode speed is within 2× of one stream measured straight at the server
    direct = _direct_tokens_per_s(gw.config.deployments[DEP])
    cfg = tmp_path / "hedgeway.yaml"
    cfg.write_text(yaml.safe_dump(config(gw.config.deployments[DEP].api_base, ledger_url)))
    assert main(["plan", "--from-ledger", ledger_url, "--config", str(cfg), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    measured = plan["measured_throughput"][DEP]
    assert measured["requests"] == 4 and direct / 2 <= measured["output_tokens_per_s"] <= direct * 2
    assert plan["self_host"]["tokens_per_s_source"] == "measured"
    assert plan["self_hosted"][0]["tokens_per_s_source"] == "measured"


def _direct_tokens_per_s(dep) -> float:
    import asyncio

    async def once():
        provider = PROVIDERS[dep.provider](dep)
        try:
            body = {"model": dep.model, "messages": HI, "max_tokens": 48, "temperature": 0, "stream": True}
            ttft, tokens, total = await one_stream(provider, ChatRequest("tiny", body, stream=True))
        finally:
            provider.close()
        return tokens / (total - ttft)
    return asyncio.run(once())


def test_bench_measures_the_real_server_and_finds_its_one_slot(llama, tmp_path, capsys):
    cfg = tmp_path / "hedgeway.yaml"
    cfg.write_text(yaml.safe_dump(config(llama.base_url, "sqlite:///:memory:")))
    assert main(["deployments", "bench", "tiny", "--config", str(cfg), "--concurrency", "1,2", "--requests", "2",
                 "--max-tokens", "32", "--json"]) == 0
    one, two = json.loads(capsys.readouterr().out)["levels"]
    assert one["errors"] == 0 and one["output_tokens"] > 0 and one["output_tokens_per_s"] > 0
    # straight at the server (no gateway queue), two at once: one of them gets llama.cpp's empty stream
    assert two["errors"] >= 1 and two["error_types"] == {"EmptyStream": two["errors"]}


def test_demo_routes_the_simple_tier_to_the_real_model(llama, tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/demo.db"
    assert main(["demo", "--self-hosted", "--requests", "12", "--no-progress", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "a real self-hosted model" in out and "12 answered" in out
    routed = [r for r in records(url, 12) if r.route and '"tier": "simple"' in r.route.replace('":"', '": "')]
    assert routed and all(r.deployment in ("self-hosted (llama.cpp smollm2-135m)", "cheap-api (simulated gpt-4o-mini)")
                          for r in routed)
    assert any(r.deployment == "self-hosted (llama.cpp smollm2-135m)" for r in routed)

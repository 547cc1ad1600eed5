"""Per-deployment slots and the queue at the gateway (queueing.py): the Gate's contract, then a gateway in
front of a fake server with llama.cpp's behaviour past its slots (an empty stream)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import orjson
import pytest
from aiohttp import web

from conftest import MASTER, UPSTREAM_KEY, records
from fake_server import LoopbackServer
from hedgeway.config import from_dict
from hedgeway.errors import ConfigError, DeploymentBusy, QueueFull
from hedgeway.http.background import BackgroundGateway
from hedgeway.queueing import Gate


# --- the gate ---
def run(coro):
    return asyncio.run(coro)


def test_waiters_get_the_slot_in_arrival_order_and_a_newcomer_never_overtakes():
    async def main():
        gate, order = Gate("d", 1, 5.0, 10), []
        await gate.enter()

        async def user(name):
            await gate.enter()
            order.append(name)
            await asyncio.sleep(0)
            gate.leave()
        tasks = [asyncio.ensure_future(user(n)) for n in "abc"]
        await asyncio.sleep(0)
        assert len(gate.waiters) == 3 and gate.active == 1
        gate.leave()  # the slot goes to "a", not back to the pool
        late = asyncio.ensure_future(user("late"))
        await asyncio.gather(*tasks, late)
        assert order == ["a", "b", "c", "late"] and gate.active == 0 and not gate.waiters
    run(main())


def test_full_line_is_refused_at_once_and_a_long_wait_times_out():
    async def main():
        gate = Gate("d", 1, 0.05, 1)
        await gate.enter()
        waiter = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        with pytest.raises(QueueFull) as full:
            await gate.enter()
        assert full.value.status_code == 429 and full.value.deployment == "d"
        with pytest.raises(DeploymentBusy) as busy:
            await waiter
        assert busy.value.status_code == 503 and busy.value.code == "queue_timeout"
        assert not gate.waiters and gate.active == 1  # the timed-out waiter left the line
    run(main())


def test_cancelled_waiter_leaves_the_line_and_passes_on_a_slot_it_was_given():
    async def main():
        gate = Gate("d", 1, 5.0, 10)
        await gate.enter()
        first, second = asyncio.ensure_future(gate.enter()), asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        gate.leave()  # handed to `first`…
        first.cancel()  # …which is cancelled before it runs again: the slot must reach `second`
        await asyncio.sleep(0)
        await asyncio.wait_for(second, 1)
        assert gate.active == 1 and not gate.waiters
        third = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        third.cancel()
        await asyncio.sleep(0)
        assert not gate.waiters
    run(main())


# --- config ---
def _cfg(base_url: str, ledger_url: str, fallbacks: dict | None = None, **dep) -> dict:
    """Models "one-slot" (with the queue settings `dep`) and "roomy" (none), on the same server."""
    return {"auth": {"master_key": MASTER}, "ledger": {"url": ledger_url, "flush_interval": 0.05},
            "routing": {"num_retries": 1, "retry_backoff": 0.01, "fallbacks": fallbacks or {}},
            "models": [{"name": name, "deployments": [{
                "provider": "openai", "model": name, "api_base": base_url, "api_key": UPSTREAM_KEY,
                "price": {"input": "1", "output": "2"}, **(dep if name == "one-slot" else {})}]}
                for name in ("one-slot", "roomy")]}


def test_queue_settings_are_validated_with_their_path():
    with pytest.raises(ConfigError, match=r"models\[0\]\.deployments\[0\].*max_concurrency"):
        from_dict(_cfg("http://127.0.0.1:9", "sqlite:///:memory:", queue_timeout=5))
    with pytest.raises(ConfigError, match=r"models\[0\]\.deployments\[0\]\.max_concurrency"):
        from_dict(_cfg("http://127.0.0.1:9", "sqlite:///:memory:", max_concurrency=0))
    dep = from_dict(_cfg("http://127.0.0.1:9", "sqlite:///:memory:", max_concurrency=2)).models["one-slot"][0]
    assert (dep.max_concurrency, dep.queue_timeout, dep.max_queue) == (2, 30.0, 100)
    lite = from_dict({"general_settings": {"master_key": MASTER}, "model_list": [{
        "model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "k", "max_parallel_requests": 3}}]})
    assert lite.models["m"][0].max_concurrency == 3


# --- through the gateway ---
class OneSlotServer(LoopbackServer):
    """Like llama.cpp's server with one slot: a stream that arrives while another runs gets an empty
    stream (role chunk, finish, [DONE]) — what 5 of 6 concurrent clients saw."""

    path_prefix = "/v1"
    def __init__(self, words: int = 12):
        super().__init__()
        self.words = words
        self.busy = 0
        self.peak = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)

    async def chat(self, request: web.Request):
        body = await self.received(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}

        async def send(delta, finish=None):
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await send({"role": "assistant", "content": ""})
        if self.busy == 0:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            try:
                for i in range(self.words):
                    await asyncio.sleep(0.02)
                    await send({"content": f"w{i} "})
            finally:
                self.busy -= 1
        await send({}, "stop")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


@pytest.fixture(scope="module")
def one_slot():
    fake = OneSlotServer().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def long_slot():
    fake = OneSlotServer(words=150).start()  # a stream of ~3 s that holds the one slot
    yield fake
    fake.stop()


def _stream(base_url: str, model: str) -> str:
    c = openai.OpenAI(base_url=base_url, api_key=MASTER, max_retries=0, timeout=30)
    out = c.chat.completions.create(model=model, stream=True, messages=[{"role": "user", "content": "hi"}])
    return "".join(ch.choices[0].delta.content or "" for ch in out if ch.choices)


def _gauge(base_url: str, name: str, dep: str) -> int:
    text = urllib.request.urlopen(base_url.replace("/v1", "/metrics"), timeout=5).read().decode()
    return int(re.search(rf'^{name}\{{deployment="{re.escape(dep)}"\}} (\d+)$', text, re.M).group(1))


def sample_while(base_url: str, dep: str, busy: threading.Event) -> list[tuple[int, int]]:
    """(waiting, in flight) as the gateway's /metrics says, until `busy` is cleared."""
    seen = []
    while busy.is_set():
        seen.append((_gauge(base_url, "llm_queue_depth", dep), _gauge(base_url, "hedgeway_inflight_requests", dep)))
        time.sleep(0.01)
    return seen


def test_six_streams_through_one_slot_all_come_back_whole(one_slot, ledger_url):
    cfg = _cfg(one_slot.base_url, ledger_url, max_concurrency=1, queue_timeout=20)
    with BackgroundGateway(from_dict(cfg)) as gw, ThreadPoolExecutor(7) as pool:
        busy = threading.Event()
        busy.set()
        sampler = pool.submit(sample_while, gw.base_url, "one-slot/openai/one-slot", busy)
        texts = list(pool.map(lambda _: _stream(gw.base_url, "one-slot"), range(6)))
        busy.clear()
        seen = sampler.result()
        after = _gauge(gw.base_url, "llm_queue_depth", "one-slot/openai/one-slot")
    whole = "".join(f"w{i} " for i in range(one_slot.words))
    assert texts == [whole] * 6 and one_slot.peak == 1
    waiting = [w for w, _ in seen]
    assert 1 <= max(waiting) <= 5 and after == 0  # those waiting, never the one in flight
    assert all(f <= 1 for _, f in seen)
    rows = records(ledger_url, 6)
    assert [r.status for r in rows] == [200] * 6 and all(r.error_type is None for r in rows)


class Held:
    """A gateway on `cfg` whose "one-slot" deployment is busy with one long stream."""

    def __init__(self, cfg: dict):
        self.gw, self.pool = BackgroundGateway(from_dict(cfg)), ThreadPoolExecutor(1)

    def __enter__(self):
        self.gw.__enter__()
        self.holder = self.pool.submit(_stream, self.gw.base_url, "one-slot")
        while _gauge(self.gw.base_url, "hedgeway_inflight_requests", "one-slot/openai/one-slot") == 0:
            time.sleep(0.005)
        return openai.OpenAI(base_url=self.gw.base_url, api_key=MASTER, max_retries=0, timeout=30)

    def __exit__(self, *exc):
        self.holder.result()
        self.pool.shutdown()
        self.gw.__exit__(*exc)


HI = [{"role": "user", "content": "hi"}]


def test_full_queue_answers_429_with_retry_after(long_slot, ledger_url):
    with Held(_cfg(long_slot.base_url, ledger_url, max_concurrency=1, max_queue=0)) as c:
        with pytest.raises(openai.RateLimitError) as full:
            c.chat.completions.create(model="one-slot", stream=True, messages=HI)
    assert full.value.code == "queue_full" and int(full.value.response.headers["retry-after"]) >= 1


def test_wait_past_queue_timeout_answers_503_with_retry_after(long_slot, ledger_url):
    with Held(_cfg(long_slot.base_url, ledger_url, max_concurrency=1, queue_timeout=0.05)) as c:
        with pytest.raises(openai.InternalServerError) as timed_out:
            c.chat.completions.create(model="one-slot", messages=HI)
    assert timed_out.value.status_code == 503 and timed_out.value.code == "queue_timeout"
    assert int(timed_out.value.response.headers["retry-after"]) >= 1


def test_busy_deployment_spills_to_the_fallback_without_a_mark_on_its_health(long_slot, ledger_url):
    cfg = _cfg(long_slot.base_url, ledger_url, {"one-slot": ["roomy"]}, max_concurrency=1, max_queue=0)
    with Held(cfg) as c:
        for _ in range(6):  # more than the breaker's failure threshold
            spilled = c.chat.completions.with_raw_response.create(model="one-slot", messages=HI, stream=True)
            assert spilled.headers["x-hedgeway-deployment"] == "roomy/openai/roomy"
        text = urllib.request.urlopen(str(c.base_url).replace("/v1/", "/metrics"), timeout=5).read().decode()
    assert 'hedgeway_breaker_state{deployment="one-slot/openai/one-slot"} 0' in text


def test_time_in_the_queue_counts_against_the_sla_deadline():
    """A TTFT deadline runs from the attempt's start, queue wait included: a request stuck behind a busy
    slot moves to the next tier at the deadline, not after queue_timeout."""
    from hedgeway.fallback import RetryPolicy, call_with_fallback
    from hedgeway.routing.config import BreakerIn
    from hedgeway.routing.health import Guard, Health
    from hedgeway.types import Deployment

    slow, spare = Deployment("slow", "m", "openai", "x"), Deployment("spare", "m", "openai", "y")
    gates = {"slow": Gate("slow", 1, 30.0, 10)}

    async def call(dep):
        gate = gates.get(dep.id)
        return dep.id if gate is None else await gate.run(lambda arg: asyncio.sleep(0, arg), dep.id)

    async def main():
        await gates["slow"].enter()  # its one slot is taken
        guard = Guard(Health(BreakerIn(), 0.3, ["slow", "spare"]), {"slow": (0.05, 0.05)})
        out = await call_with_fallback([(slow,), (spare,)], call, RetryPolicy(0), {"slow": 0, "spare": 0},
                                       hold=True, guard=guard)
        assert out.result == "spare" and [f.code for f in out.failures] == ["sla_deadline_missed"]
        assert not gates["slow"].waiters  # it left the line when the deadline cancelled its wait
    run(main())

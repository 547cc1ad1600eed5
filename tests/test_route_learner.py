"""Labels from a route's own traffic, end to end through a real gateway: simulated strong and weak tiers, a
judge upstream on loopback speaking OpenAI's format (honest, biased to the first position, unreadable,
failing, hanging). The user's answer is never changed or failed by labelling; labelling calls are ledger
rows of their own, never in a user's budget, and stop at the route's daily budget (also after a restart,
and again the next day)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from urllib.request import urlopen

import openai
import pytest
from aiohttp import web

from conftest import MASTER, UPSTREAM_KEY
from fake_server import LoopbackServer
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import Record, open_store
from hedgeway.routing.label_store import LabelStore, read_labels
from hedgeway.routing.learner import Learner
from test_ledger_postgres import pg_admin  # noqa: F401  (the shared PostgreSQL fixture)


class FakeJudge(LoopbackServer):
    """Grades by the upstream model name: judge-honest prefers the answer from the strong tier
    ("[strong-sim]"), judge-first always answers [[A]], judge-garbage rambles, judge-500 fails, judge-hang
    never answers in time, judge-hold answers once `release()` is called."""

    path_prefix = "/v1"

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self.released.set)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)

    async def chat(self, request):
        body = await self.received(request)
        model = body["model"]
        if model == "judge-500":
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        if model == "judge-hang":
            await asyncio.sleep(5)
        if model == "judge-hold":
            await self.released.wait()
            model = "judge-honest"
        prompt = body["messages"][-1]["content"]
        a = prompt.split("[The start of assistant A's answer]")[1].split("[The end")[0]
        text = {"judge-honest": "A is right.\n[[A]]" if "[strong-sim]" in a else "B is right.\n[[B]]",
                "judge-first": "Verdict: A", "judge-garbage": "Both have merits; it depends on taste."}[model]
        return web.json_response({"id": "j", "object": "chat.completion", "created": 1, "model": model,
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                               "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 400, "completion_tokens": 8, "total_tokens": 408}})


@pytest.fixture(scope="module")
def judge():
    server = FakeJudge()
    server.released = asyncio.Event()
    server.start()
    yield server
    server.stop()


def sim(label: str) -> dict:
    return {"provider": "simulated", "model": label, "price": {"input": "1", "output": "2"},
            "settings": {"label": label, "ttft_ms": 1, "tokens_per_second": 50000, "max_output_tokens": 20}}


def config(url: str, judge_url: str, judge_model: str = "judge-honest", log_prompts: bool = False,
           judge_timeout: float = 0.5, **learn) -> dict:
    return {
        "auth": {"master_key": MASTER},
        "ledger": {"url": url, "flush_interval": 0.02, "log_prompts": log_prompts},
        "routing": {"num_retries": 0},
        "router": {"routes": [{  # thresholds at 0: every request goes to the strong tier
            "name": "auto", "router": "heuristic", "thresholds": {"medium": 0, "complex": 0},
            "tiers": {"simple": "weak", "complex": "strong"},
            "learn": {"share": 1.0, "judge": "judge", "daily_budget": "10", **learn}}]},
        "models": [{"name": "strong", "deployments": [sim("strong-sim")]},
                   {"name": "weak", "deployments": [sim("weak-sim")]},
                   {"name": "judge", "deployments": [{"provider": "openai", "model": judge_model,
                                                      "api_base": judge_url, "api_key": UPSTREAM_KEY,
                                                      "timeout": judge_timeout,
                                                      "price": {"input": "1", "output": "1"}}]}]}


def ask(gw, n: int, model: str = "auto", key: str = MASTER) -> list[tuple[str, str]]:
    """(request id, answer) of `n` requests."""
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=10)
    out = []
    for i in range(n):
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": f"Explain topic number {i} in detail."}])
        out.append((raw.headers["x-hedgeway-request-id"], raw.parse().choices[0].message.content))
    return out


def wait_labels(url: str, n: int, timeout: float = 10.0) -> list[dict]:
    store = LabelStore(url)
    deadline = time.monotonic() + timeout
    try:
        while len(rows := store.rows("auto")) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return rows
    finally:
        store.close()


def ledger(url: str) -> list[Record]:
    store = open_store(url)
    try:
        return store.records()
    finally:
        store.close()


def test_judged_labels_from_traffic_with_their_calls_billed_apart(tmp_path, judge):
    url = f"sqlite:///{tmp_path}/l.db"
    with BackgroundGateway(from_dict(config(url, judge.base_url))) as gw:
        answers = ask(gw, 3)
        direct = ask(gw, 3, model="strong")  # what the strong tier answers anyway
        rows = wait_labels(url, 3)
    assert [a for _, a in answers] == [a for _, a in direct] and all("[strong-sim]" in a for _, a in answers)
    assert sorted(r["id"] for r in rows) == sorted(rid for rid, _ in answers)
    for r in rows:
        assert (r["verdict"], r["strong_wins"], r["served"], r["source"]) == ("strong", 1.0, "strong", "judge")
        assert (r["strong_model"], r["weak_model"], r["key_id"]) == ("strong", "weak", "master")
        assert r["prompt"] is None and r["embedding"] and '"cues"' in r["features"]  # log_prompts is off
    lines = read_labels(url, "auto")
    assert len(lines) == 3 and all(set(ln) == {"id", "embedding", "strong_wins"} for ln in lines)
    assert all(len(ln["embedding"]) == 384 and abs(sum(x * x for x in ln["embedding"]) - 1) < 1e-3 for ln in lines)
    recs = ledger(url)
    labelling = [r for r in recs if r.endpoint in ("shadow", "judge")]
    assert sorted((r.endpoint, r.model_name) for r in labelling) == sorted(
        [("shadow", "weak")] * 3 + [("judge", "judge")] * 6)
    assert all(r.key_id == "hedgeway:learn" and r.route == '{"learn":"auto"}' and r.cost > 0 for r in labelling)
    users = [r for r in recs if r.endpoint == "chat" and r.model_name == "auto"]
    assert len(users) == 3 and all(r.key_id == "master" for r in users)
    # the judge saw each pair twice: the strong tier's answer once as A, once as B
    first = [m["messages"][-1]["content"].split("assistant A's answer]\n")[1].startswith("[strong-sim]")
             for m in judge.requests[-6:]]
    assert sorted(first) == [False] * 3 + [True] * 3


def test_streamed_requests_are_labelled_too(tmp_path, judge):
    url = f"sqlite:///{tmp_path}/l.db"
    with BackgroundGateway(from_dict(config(url, judge.base_url))) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0, timeout=10)
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="auto", stream=True, messages=[{"role": "user", "content": "Explain topic 0 in detail."}])
            if c.choices)
        (row,) = wait_labels(url, 1)
    assert text.startswith("[strong-sim]") and (row["verdict"], row["served"]) == ("strong", "strong")
    assert [m.model_name for m in labelling_rows(url)].count("judge") == 2


def test_a_judge_biased_to_the_first_position_gives_ties_and_log_prompts_keeps_the_prompt(tmp_path, judge):
    url = f"sqlite:///{tmp_path}/l.db"
    with BackgroundGateway(from_dict(config(url, judge.base_url, "judge-first", log_prompts=True))) as gw:
        ask(gw, 2)
        rows = wait_labels(url, 2)
    assert [(r["verdict"], r["strong_wins"]) for r in rows] == [("split", 0.5)] * 2
    lines = read_labels(url, "auto")
    assert all(ln["messages"][0]["content"].startswith("Explain topic") and ln["strong_wins"] == 0.5
               for ln in lines)


@pytest.mark.parametrize("judge_model, verdict", [("judge-garbage", "unparsed"), ("judge-500", "error"),
                                                  ("judge-hang", "error")])
def test_a_failing_or_unreadable_judge_never_touches_the_users_answer(tmp_path, judge, judge_model, verdict):
    url = f"sqlite:///{tmp_path}/l.db"
    with BackgroundGateway(from_dict(config(url, judge.base_url, judge_model))) as gw:
        answers = ask(gw, 2)
        direct = ask(gw, 2, model="strong")
        rows = wait_labels(url, 2)
    assert [a for _, a in answers] == [a for _, a in direct]
    assert [(r["verdict"], r["strong_wins"]) for r in rows] == [(verdict, None)] * 2
    assert read_labels(url, "auto") == []  # recorded as such, never a guessed label
    users = [r for r in ledger(url) if r.endpoint == "chat"]
    assert len(users) == 4 and all(r.status == 200 and r.error_type is None for r in users)


def test_users_are_answered_while_a_judge_call_is_pending(tmp_path, judge):
    url = f"sqlite:///{tmp_path}/l.db"
    with BackgroundGateway(from_dict(config(url, judge.base_url, "judge-hold", judge_timeout=30))) as gw:
        ask(gw, 1)
        deadline = time.monotonic() + 5
        while not any(r["model"] == "judge-hold" for r in judge.requests) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(r["model"] == "judge-hold" for r in judge.requests)  # the first label's judge call is held
        answers = ask(gw, 3)  # ...and users are answered meanwhile
        assert len(answers) == 3 and all("[strong-sim]" in a for _, a in answers)
        assert wait_labels(url, 1, timeout=0.2) == []  # no label while its judge is held
        judge.release()
        rows = wait_labels(url, 4)
    assert [r["verdict"] for r in rows] == ["strong"] * 4


def test_an_other_tier_that_falls_back_to_another_model_gives_no_label(tmp_path, judge):
    url = f"sqlite:///{tmp_path}/l.db"
    raw = config(url, judge.base_url)
    raw["routing"]["fallbacks"] = {"weak": ["strong"]}  # the weak tier fails over to the strong model
    raw["models"][1]["deployments"][0]["settings"]["failure_rate"] = 1.0
    with BackgroundGateway(from_dict(raw)) as gw:
        ask(gw, 2)
        deadline = time.monotonic() + 5
        while 'outcome="other_failed"} 2' not in (scrape := urlopen(gw.base_url[:-3] + "/metrics").read().decode()) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    assert 'hedgeway_route_labels_total{route="auto",outcome="other_failed"} 2' in scrape
    assert wait_labels(url, 0) == [] and [r.endpoint for r in labelling_rows(url)] == ["shadow"] * 2  # no judge


def test_labelling_is_never_charged_to_a_users_budget(tmp_path, judge):
    url = f"sqlite:///{tmp_path}/l.db"
    raw = config(url, judge.base_url)
    raw["limits"] = {"budgets": [{"limit": "0.01", "period": "daily"}], "budget_wait": 0}  # on every request
    raw["models"][2]["deployments"][0]["price"] = {"input": "100", "output": "100"}  # $0.04 a judge call
    with BackgroundGateway(from_dict(raw)) as gw:
        for i in range(3):  # each label spends 8x the user budget; the users are admitted all the same
            assert len(ask(gw, 1)) == 1
            assert len(wait_labels(url, i + 1)) == i + 1
    judged = [r for r in labelling_rows(url) if r.endpoint == "judge"]
    assert len(judged) == 6 and sum(r.cost for r in judged) > Decimal("0.2")
    with BackgroundGateway(from_dict(raw)) as gw:  # a restart restores the budget from the ledger: users only
        assert len(ask(gw, 1)) == 1


def labelling_rows(url: str) -> list[Record]:
    return [r for r in ledger(url) if r.endpoint in ("shadow", "judge")]


def test_labelling_stops_at_the_daily_budget_and_a_restart_keeps_counting(tmp_path, judge):
    url = f"sqlite:///{tmp_path}/l.db"
    with BackgroundGateway(from_dict(config(url, judge.base_url, daily_budget="0.000001", max_in_flight=1))) as gw:
        ask(gw, 1)
        deadline = time.monotonic() + 5
        while not labelling_rows(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        ask(gw, 4)
    spent = labelling_rows(url)
    assert [r.endpoint for r in spent] == ["shadow"]  # one call went over; nothing after it
    # a new process reads today's labelling spend from the ledger
    with BackgroundGateway(from_dict(config(url, judge.base_url, daily_budget="0.000001"))) as gw:
        answers = ask(gw, 3)
        deadline = time.monotonic() + 5
        while 'outcome="budget"} 3' not in (scrape := urlopen(gw.base_url[:-3] + "/metrics").read().decode()) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(answers) == 3 and [r.endpoint for r in labelling_rows(url)] == ["shadow"]
    assert wait_labels(url, 0) == []
    assert 'hedgeway_route_labels_total{route="auto",outcome="budget"} 3' in scrape


def _learner(url: str, clock) -> Learner:
    cfg = from_dict(config(url, "http://127.0.0.1:9/v1", daily_budget="0.50"))
    return Learner(cfg, again=None, background=None, clock=clock)


def _spend(url: str, ts: float, rows: list[tuple[str, str, str]]) -> None:
    store = open_store(url)
    store.migrate()
    store.write([Record(request_id=f"r{i}-{ts}", ts=ts, endpoint=endpoint, model_name="weak", deployment=None,
                        provider=None, status=200, cost=Decimal(cost), route=route)
                 for i, (endpoint, route, cost) in enumerate(rows)])
    store.close()


def _budget_resumes_next_day(url: str) -> None:
    now = time.time()
    _spend(url, now, [("shadow", '{"learn":"auto"}', "0.30"), ("judge", '{"learn":"auto","fallbacks":["x"]}',
                                                                  "0.25"),
                      ("chat", '{"learn":"auto"}', "9"), ("judge", '{"learn":"auto2"}', "9"),
                      ("judge", '{"learn":"aut%"}', "9")])
    today = _learner(url, lambda: now)
    assert asyncio.run(today.room(today.pairs["auto"])) is False  # 0.55 of 0.50 spent
    assert today.spent["auto"].total() == Decimal("0.55")
    tomorrow = _learner(url, lambda: now + 86400)
    assert asyncio.run(tomorrow.room(tomorrow.pairs["auto"])) is True
    today.close()
    tomorrow.close()


def _replicas_share_the_budget(url: str) -> None:
    from hedgeway.routing.learner import REFRESH

    clock = [time.time()]
    mine = _learner(url, lambda: clock[0])
    pair, run = mine.pairs["auto"], lambda: asyncio.run(mine.room(pair))
    assert run() is True
    _spend(url, clock[0], [("judge", '{"learn":"auto"}', "0.20"), ("shadow", '{"learn":"auto"}', "0.20")])
    mine.spent["auto"].own.append((clock[0], Decimal("0.20")))  # one of the two rows is its own call
    assert run() is True and mine.spent["auto"].total() == Decimal("0.20")  # until the next read
    clock[0] += REFRESH
    assert run() is True and mine.spent["auto"].total() == Decimal("0.40")  # both replicas', its own once
    _spend(url, clock[0], [("judge", '{"learn":"auto"}', "0.09")])  # the other replica again
    clock[0] += REFRESH - 1
    mine.spent["auto"].own.append((clock[0], Decimal("0.02")))  # its own, maybe not in the ledger yet
    clock[0] += 1
    assert run() is False and mine.spent["auto"].total() == Decimal("0.51")  # counted on top, never less
    mine.close()


def test_budget_resumes_the_next_day_sqlite(tmp_path):
    _budget_resumes_next_day(f"sqlite:///{tmp_path}/b.db")


def test_replicas_share_the_budget_through_the_ledger_sqlite(tmp_path):
    _replicas_share_the_budget(f"sqlite:///{tmp_path}/b.db")


def test_budget_in_postgres(pg_admin):  # noqa: F811
    import uuid

    server, admin = pg_admin
    schema = f"hw_learn_{uuid.uuid4().hex[:8]}"
    try:
        _budget_resumes_next_day(f"{server}?schema={schema}")
        admin.execute(f"TRUNCATE {schema}.requests")
        _replicas_share_the_budget(f"{server}?schema={schema}")
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize("change, path", [
    ({"judge": "nope"}, "router.routes[0].learn.judge"),
    ({"share": 0}, "router.routes[0].learn.share"),
    ({"share": 1.5}, "router.routes[0].learn.share"),
    ({"daily_budget": "-1"}, "router.routes[0].learn.daily_budget"),
    ({"daily_budget": "lots"}, "router.routes[0].learn.daily_budget"),
    ({"shares": 0.1}, "router.routes[0].learn.shares"),
])
def test_learn_config_is_strict_and_names_the_bad_field(change, path):
    from hedgeway.errors import ConfigError

    raw = config("sqlite:///x.db", "http://127.0.0.1:9/v1", **change)
    with pytest.raises(ConfigError) as err:
        from_dict(raw)
    assert err.value.path == path


def test_learn_needs_two_models():
    from hedgeway.errors import ConfigError

    raw = config("sqlite:///x.db", "http://127.0.0.1:9/v1")
    raw["router"]["routes"][0]["tiers"] = {"simple": "strong", "complex": "strong"}
    with pytest.raises(ConfigError, match="two tiers") as err:
        from_dict(raw)
    assert err.value.path == "router.routes[0].learn"
    assert from_dict(config("sqlite:///x.db", "http://127.0.0.1:9/v1")).router.routes[0].learn.daily_budget \
        == Decimal("10")


def test_judged_labels_in_postgres(judge, pg_admin):  # noqa: F811
    import uuid

    server, admin = pg_admin
    schema = f"hw_learn_{uuid.uuid4().hex[:8]}"
    url = f"{server}?schema={schema}"
    try:
        with BackgroundGateway(from_dict(config(url, judge.base_url, "judge-first"))) as gw:
            answers = ask(gw, 2)
            rows = wait_labels(url, 2)
        assert sorted(r["id"] for r in rows) == sorted(rid for rid, _ in answers)
        assert [(r["verdict"], r["strong_wins"]) for r in rows] == [("split", 0.5)] * 2
        assert len(read_labels(url, "auto")) == 2
        costs = admin.execute(f"SELECT endpoint, count(*) FROM {schema}.requests WHERE key_id = 'hedgeway:learn' "
                              "GROUP BY endpoint ORDER BY endpoint").fetchall()
        assert costs == [("judge", 4), ("shadow", 2)]
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

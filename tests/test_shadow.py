"""Shadow traffic with the simulated provider: copies of live requests go to a candidate after the user
has the answer — never delaying, changing or failing it — and both answers land side by side in
`shadow_results` (agreement, latency, cost), billed as `endpoint: shadow` ledger rows; the report CLI reads
them back. Candidates: the same model (agrees), another model (disagrees), one that always fails, and a
slow one behind a one-slot bound (copies skipped, counted)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from decimal import Decimal

import openai
import pytest

from conftest import MASTER
from hedgeway.cli import main
from hedgeway.config import from_dict
from hedgeway.errors import ConfigError
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import open_store
from test_ledger_postgres import pg_admin  # noqa: F401  (the shared PostgreSQL fixture)


def sim(model: str, ttft_ms: float = 1, fail: float = 0.0) -> dict:
    return {"provider": "simulated", "model": model, "price": {"input": "1", "output": "2"},
            "settings": {"ttft_ms": ttft_ms, "tokens_per_second": 20000, "max_output_tokens": 30,
                         "failure_rate": fail}}


def config(url: str, candidate: dict, **shadow) -> dict:
    return {"auth": {"master_key": MASTER}, "ledger": {"url": url, "flush_interval": 0.02},
            "routing": {"num_retries": 0, "shadows": [{"model": "live", "candidate": "cand", "share": 1.0,
                                                       "embedder": "none", **shadow}]},
            "models": [{"name": "live", "deployments": [sim("llama-70b")]},
                       {"name": "cand", "deployments": [candidate]}]}


def send(gw, n: int, stream: bool = False) -> list[str]:
    """The answer text of each of `n` requests to `live`."""
    client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0, timeout=10)
    out = []
    for i in range(n):
        msgs = [{"role": "user", "content": f"question {i}"}]
        if stream:
            out.append("".join(c.choices[0].delta.content or "" for c in
                               client.chat.completions.create(model="live", messages=msgs, stream=True) if c.choices))
        else:
            out.append(client.chat.completions.create(model="live", messages=msgs).choices[0].message.content)
    return out


def results(path, wait_for: int, timeout: float = 5.0) -> list[sqlite3.Row]:
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(path)
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM shadow_results ORDER BY ts").fetchall()
        conn.close()
        if len(rows) >= wait_for or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.mark.parametrize("stream", [False, True])
def test_same_model_agrees_and_the_copy_starts_after_the_user_has_the_answer(tmp_path, stream):
    path = tmp_path / "s.db"
    cfg = config(f"sqlite:///{path}", sim("llama-70b", ttft_ms=400))  # same answers, but slow
    with BackgroundGateway(from_dict(cfg)) as gw:
        answers = send(gw, 4, stream)
        rows = results(path, 4)
    assert len(rows) == 4 and all(r["error"] is None and r["rouge_l"] == 1.0 for r in rows)
    # what the user got (rows are in the order the slow copies finished, not the order they were sent)
    assert sorted(r["primary_answer"] for r in rows) == sorted(answers)
    assert all(r["shadow_latency_ms"] >= 400 for r in rows)  # the slow candidate's time to first token
    assert {(r["primary_deployment"], r["shadow_deployment"]) for r in rows} == {
        ("live/simulated/llama-70b", "cand/simulated/llama-70b")}
    store = open_store(f"sqlite:///{path}")
    recs = store.records()
    store.close()
    copies = [r for r in recs if r.endpoint == "shadow"]
    assert len(copies) == 4 and all(r.model_name == "cand" and r.cost > 0 and r.status == 200 for r in copies)
    assert sorted(Decimal(r["shadow_cost"]) for r in rows) == sorted(r.cost for r in copies)
    users = {r.request_id: r for r in recs if r.endpoint == "chat"}
    assert len(users) == 4
    for copy in copies:  # each copy began only once its user's request was complete and recorded
        user = users[copy.request_id.removesuffix("-shadow")]
        assert copy.ts >= user.ts + user.latency_ms / 1000 - 0.002  # (two clocks: 2 ms of slack)


def test_a_different_model_disagrees_and_the_report_says_so(tmp_path, capsys):
    path = tmp_path / "s.db"
    cfg = config(f"sqlite:///{path}", sim("llama-8b-degraded"), embedder="minilm", keep_answers=False)
    with BackgroundGateway(from_dict(cfg)) as gw:
        send(gw, 5)
        rows = results(path, 5)
    assert len(rows) == 5 and all(r["rouge_l"] < 0.6 for r in rows)
    assert all(0 < r["similarity"] < 1 for r in rows)  # the embedder compared them too
    assert all(r["primary_answer"] is None and r["shadow_answer"] is None for r in rows)  # keep_answers: false
    capsys.readouterr()
    assert main(["shadow", "report", "--db", f"sqlite:///{path}", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["model"] == "live" and report["candidate"] == "cand" and report["requests"] == 5
    assert report["errors"] == 0 and report["rouge_l"] == pytest.approx(sum(r["rouge_l"] for r in rows) / 5)
    assert Decimal(report["shadow_cost"]) == sum(Decimal(r["shadow_cost"]) for r in rows) > 0
    assert main(["shadow", "report", "--db", f"sqlite:///{path}"]) == 0
    table = capsys.readouterr().out
    assert "live" in table and "cand" in table and f"{report['rouge_l']:.3f}" in table


def test_a_failing_candidate_never_fails_the_user(tmp_path):
    path = tmp_path / "s.db"
    with BackgroundGateway(from_dict(config(f"sqlite:///{path}", sim("llama-8b", fail=1.0)))) as gw:
        answers = send(gw, 3)
        rows = results(path, 3)
        scrape = _metrics(gw)
    assert len(answers) == 3 and all(answers)
    assert len(rows) == 3 and all(r["error"] == "AllDeploymentsFailed" and r["rouge_l"] is None for r in rows)
    assert 'hedgeway_shadow_requests_total{model="live",candidate="cand",outcome="error"} 3' in scrape
    store = open_store(f"sqlite:///{path}")
    failed = [r for r in store.records() if r.endpoint == "shadow"]
    store.close()
    assert len(failed) == 3 and all(r.status >= 500 for r in failed)


def test_a_comparison_that_cannot_be_stored_is_counted_and_the_user_unaffected(tmp_path):
    path = tmp_path / "s.db"
    with BackgroundGateway(from_dict(config(f"sqlite:///{path}", sim("llama-70b")))) as gw:
        send(gw, 1)
        assert len(results(path, 1)) == 1
        with sqlite3.connect(path) as db:
            db.execute("DROP TABLE shadow_results")  # the database loses the table under the gateway
        answers = send(gw, 2)
        deadline = time.monotonic() + 5
        while 'outcome="unstored"} 2' not in (scrape := _metrics(gw)) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(answers) == 2 and all(answers)
    assert 'outcome="unstored"} 2' in scrape and 'outcome="compared"} 1' in scrape


def test_copies_beyond_max_in_flight_are_skipped_not_queued(tmp_path):
    path = tmp_path / "s.db"
    cfg = config(f"sqlite:///{path}", sim("llama-70b", ttft_ms=600), max_in_flight=1)
    with BackgroundGateway(from_dict(cfg)) as gw:
        send(gw, 4)  # ~10 ms each: copies 2..4 find the one slot taken
        scrape = _metrics(gw)
        rows = results(path, 1)
    assert 'outcome="skipped"} 3' in scrape
    assert len(rows) == 1


def test_shadow_results_in_postgres(pg_admin):  # noqa: F811
    server, admin = pg_admin
    schema = f"hw_shadow_{uuid.uuid4().hex[:8]}"
    url = f"{server}?schema={schema}"
    try:
        with BackgroundGateway(from_dict(config(url, sim("llama-70b")))) as gw:
            send(gw, 2)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                n = admin.execute(f"SELECT count(*) FROM {schema}.shadow_results").fetchone()[0]
                if n == 2:
                    break
                time.sleep(0.05)
        rows = admin.execute(f"SELECT rouge_l, shadow_cost FROM {schema}.shadow_results").fetchall()
        assert len(rows) == 2 and all(r[0] == 1.0 and r[1] > 0 for r in rows)
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_config_names_the_bad_field(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with pytest.raises(ConfigError, match=r"routing\.shadows\[0\]\.candidate.*'nope'"):
        from_dict({**config(url, sim("x")), "routing": {"shadows": [{"model": "live", "candidate": "nope"}]}})
    with pytest.raises(ConfigError, match=r"routing\.shadows\[0\]\.model"):
        from_dict({**config(url, sim("x")), "routing": {"shadows": [{"model": "ghost", "candidate": "cand"}]}})
    with pytest.raises(ConfigError, match=r"routing\.shadows\[0\]\.share"):
        from_dict({**config(url, sim("x")), "routing": {"shadows": [{"model": "live", "candidate": "cand",
                                                                     "share": 2}]}})


def _metrics(gw) -> str:
    import urllib.request

    req = urllib.request.Request(gw.base_url.removesuffix("/v1") + "/metrics",
                                 headers={"Authorization": f"Bearer {MASTER}"})
    return urllib.request.urlopen(req, timeout=5).read().decode()


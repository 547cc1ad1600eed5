"""Application labels (`POST /v1/feedback`): authenticated, only for the caller's own requests (another
key's request is a 404 like an unknown one), bad input as an OpenAI error envelope; and label lines in and
out of the ledger database (`hedgeway router labels import|export`) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid

import openai
import pytest

from conftest import MASTER
from hedgeway.cli import main
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.routing.label_store import LabelStore, read_labels
from test_admin_api import call, make_key
from test_ledger_postgres import pg_admin  # noqa: F401  (the shared PostgreSQL fixture)
from test_route_learner import config as learn_config, judge, sim, wait_labels  # noqa: F401  (judge: fixture)


def config(url: str, complex_threshold: float = 0.0) -> dict:
    return {"auth": {"master_key": MASTER}, "ledger": {"url": url, "flush_interval": 0.02},
            "router": {"routes": [{"name": "auto", "router": "heuristic",
                                   "thresholds": {"medium": complex_threshold, "complex": complex_threshold},
                                   "tiers": {"simple": "weak", "complex": "strong"}}]},
            "models": [{"name": "strong", "deployments": [sim("strong-sim")]},
                       {"name": "weak", "deployments": [sim("weak-sim")]}]}


def request_id(gw, key: str, model: str = "auto", stream: bool = False) -> str:
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=10)
    raw = client.chat.completions.with_raw_response.create(
        model=model, stream=stream, messages=[{"role": "user", "content": "Write a haiku about routers."}])
    if stream:
        list(raw.parse())
    return raw.headers["x-hedgeway-request-id"]


def feedback(gw, key: str | None, body=None, raw: bytes | None = None):
    return call(gw, "POST", "/v1/feedback", body, key=key, raw=raw)


def test_feedback_is_only_for_the_callers_own_requests(tmp_path):
    url = f"sqlite:///{tmp_path}/f.db"
    with BackgroundGateway(from_dict(config(url))) as gw:
        alice, bob = make_key(gw, name="alice")["key"], make_key(gw, name="bob")["key"]
        rid = request_id(gw, alice)
        status, out = feedback(gw, bob, {"request_id": rid, "strong_wins": 1})
        assert status == 404 and out["error"]["code"] == "request_not_found" and rid in out["error"]["message"]
        assert feedback(gw, MASTER, {"request_id": rid, "strong_wins": 1})[0] == 404  # the master key is a caller too
        assert feedback(gw, alice, {"request_id": "hw-nope-1", "score": 1})[0] == 404
        assert feedback(gw, None, {"request_id": rid, "score": 1})[0] == 401
        assert feedback(gw, "sk-wrong", {"request_id": rid, "score": 1})[0] == 401
        status, out = feedback(gw, alice, {"request_id": rid, "strong_wins": 1})
        assert status == 200 and out == {"object": "feedback", "request_id": rid, "route": "auto",
                                         "served": "strong", "strong_wins": 1.0, "features": True}
        # the same request again replaces the label; bob's request is bob's
        assert feedback(gw, alice, {"request_id": rid, "strong_wins": 0.25})[0] == 200
        bobs = request_id(gw, bob)
        assert feedback(gw, bob, {"request_id": bobs, "score": 0.9})[1]["strong_wins"] is None  # strong served
    store = LabelStore(url)
    rows = {r["request_id"]: r for r in store.rows("auto")}
    store.close()
    assert set(rows) == {rid, bobs} and rows[rid]["strong_wins"] == 0.25 and rows[rid]["source"] == "feedback"
    assert rows[bobs]["strong"] == 0.9 and rows[bobs]["weak"] is None and rows[bobs]["strong_wins"] is None
    lines = read_labels(url, "auto")  # a one-sided score is kept, but is no training example
    assert [(ln["id"], ln["strong_wins"], len(ln["embedding"])) for ln in lines] == [(f"{rid}/feedback", 0.25, 384)]


def test_a_judged_request_with_feedback_is_one_training_example_the_applications(tmp_path, judge):  # noqa: F811
    url = f"sqlite:///{tmp_path}/f.db"
    with BackgroundGateway(from_dict(learn_config(url, judge.base_url))) as gw:
        rid = request_id(gw, MASTER)
        assert [r["verdict"] for r in wait_labels(url, 1)] == ["strong"]
        assert feedback(gw, MASTER, {"request_id": rid, "strong_wins": 0})[0] == 200
    assert [(ln["id"], ln["strong_wins"]) for ln in read_labels(url, "auto")] == [(f"{rid}/feedback", 0.0)]


@pytest.mark.parametrize("body, raw, param", [
    (None, b"{not json", None),
    ([], None, "request_id"),
    ({"score": 1}, None, "request_id"),
    ({"request_id": 5, "score": 1}, None, "request_id"),
    ({"request_id": "x"}, None, None),
    ({"request_id": "x", "score": 1, "strong_wins": 1}, None, None),
    ({"request_id": "x", "score": 1, "extra": 1}, None, None),
    ({"request_id": "x", "score": 1.5}, None, "score"),
    ({"request_id": "x", "score": True}, None, "score"),
    ({"request_id": "x", "strong_wins": "1"}, None, "strong_wins"),
    ({"request_id": "x", "strong_wins": -0.1}, None, "strong_wins"),
])
def test_bad_feedback_is_an_openai_error_envelope(tmp_path, body, raw, param):
    with BackgroundGateway(from_dict(config(f"sqlite:///{tmp_path}/f.db"))) as gw:
        status, out = feedback(gw, MASTER, body, raw=raw)
    assert status == 400 and out["error"]["type"] == "invalid_request_error" and out["error"]["param"] == param


def once_written(gw, body: dict):
    """The feedback's answer once the request's ledger row is written (the writer is asynchronous)."""
    deadline = time.monotonic() + 5
    while (got := feedback(gw, MASTER, body))[0] == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_feedback_on_a_cheap_answer_and_from_the_ledger(tmp_path):
    url = f"sqlite:///{tmp_path}/f.db"
    with BackgroundGateway(from_dict(config(url, complex_threshold=1.0))) as gw:  # every request: weak tier
        rid = request_id(gw, MASTER)
        status, out = feedback(gw, MASTER, {"request_id": rid, "score": 0.2})
        assert status == 200 and out["served"] == "weak" and out["strong_wins"] == pytest.approx(0.8)
        plain = request_id(gw, MASTER, model="strong")  # not remembered: found in the ledger, once written
        status, out = once_written(gw, {"request_id": plain, "score": 1})
        assert status == 400 and out["error"]["code"] == "not_routed"
        streamed = request_id(gw, MASTER, stream=True)
        status, out = feedback(gw, MASTER, {"request_id": streamed, "score": 1})
        assert status == 200 and out["served"] == "weak" and out["features"] is True
    with BackgroundGateway(from_dict(config(url, complex_threshold=1.0))) as gw:  # another replica, or a restart
        status, out = feedback(gw, MASTER, {"request_id": rid, "score": 0.4})  # the ledger knows it
        assert status == 200 and out["served"] == "weak" and out["features"] is False  # no log_prompts
        plain_routed = request_id(gw, MASTER)
    with BackgroundGateway(from_dict(config(url, complex_threshold=1.0))) as gw:
        assert once_written(gw, {"request_id": plain_routed, "score": 0.5})[1]["features"] is False
    lines = {ln["id"]: ln for ln in read_labels(url, "auto")}  # the one with no features is no training example
    assert set(lines) == {f"{rid}/feedback", f"{streamed}/feedback"}
    kept = lines[f"{rid}/feedback"]
    assert kept["strong_wins"] == pytest.approx(0.6) and len(kept["embedding"]) == 384


LINES = [
    {"id": "p1", "prompt": "Prove that sqrt(2) is irrational.", "strong": 1.0, "weak": 0.0},
    {"id": "p2", "messages": [{"role": "user", "content": "hi"}], "strong_wins": 0},
    {"id": "p3", "embedding": [(-1) ** i * 0.05 for i in range(384)], "strong_wins": 0.5},
    {"id": "p4", "prompt": "Sort a list in Rust", "embedding": [0.051] * 384, "strong": 7, "weak": 9},
]


def _round_trip(url: str, tmp_path, capsys) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(json.dumps(ln) for ln in LINES) + "\n\n")
    assert main(["router", "labels", "import", str(src), "--db", url, "--route", "auto"]) == 0
    assert "imported 4 label(s) into route auto" in capsys.readouterr().err
    assert main(["router", "labels", "export", "--db", url, "--route", "auto", "--output", str(out)]) == 0
    assert "exported 4 label(s)" in capsys.readouterr().err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [{k: v for k, v in g.items() if k != "embedding"} for g in got] == [
        {k: v for k, v in ln.items() if k != "embedding"} for ln in LINES]
    for g, ln in zip(got, LINES):  # stored as float32
        assert ("embedding" in g) == ("embedding" in ln)
        assert g.get("embedding", []) == pytest.approx(ln.get("embedding", []), abs=1e-7)
    assert main(["router", "labels", "export", "--db", url, "--route", "other"]) == 0
    assert capsys.readouterr().out == ""
    # a bad line stores nothing and names itself
    src.write_text(json.dumps({"id": "p9", "prompt": "x", "strong_wins": 1}) + "\n"
                   + json.dumps({"id": "p10", "prompt": "x", "strong_wins": 2}) + "\n")
    assert main(["router", "labels", "import", str(src), "--db", url, "--route", "auto"]) == 2
    assert f"{src}:2: strong_wins must lie in [0, 1]" in capsys.readouterr().err
    assert [ln["id"] for ln in read_labels(url, "auto")] == ["p1", "p2", "p3", "p4"]


def test_import_export_round_trip_sqlite(tmp_path, capsys):
    _round_trip(f"sqlite:///{tmp_path}/labels.db", tmp_path, capsys)


def test_import_export_round_trip_postgres(tmp_path, capsys, pg_admin):  # noqa: F811
    server, admin = pg_admin
    schema = f"hw_labels_{uuid.uuid4().hex[:8]}"
    try:
        _round_trip(f"{server}?schema={schema}", tmp_path, capsys)
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize("line, message", [
    ({"prompt": "x", "strong_wins": 1}, 'a string "id"'),
    ({"id": "a", "strong_wins": 1}, '"prompt", "messages" or "embedding"'),
    ({"id": "a", "prompt": "x"}, '"strong" and "weak", or "strong_wins"'),
    ({"id": "a", "prompt": "x", "strong": 1}, '"strong" and "weak", or "strong_wins"'),
    ({"id": "a", "prompt": "x", "messages": [], "strong_wins": 1}, "one of"),
    ({"id": "a", "embedding": [0.1] * 3, "strong_wins": 1}, "384"),
    ({"id": "a", "prompt": "x", "strong": "good", "weak": 1}, "strong must be a number"),
])
def test_bad_label_lines_are_named(tmp_path, capsys, line, message):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(line) + "\n")
    assert main(["router", "labels", "import", str(src), "--db", f"sqlite:///{tmp_path}/l.db", "--route", "a"]) == 2
    assert message in capsys.readouterr().err

"""Metrics documentation and the Grafana dashboard against a live gateway: a real gateway on loopback
(budgets, tracing and a shadow configured, a streamed and a failed request) is scraped, and
* every metric family it exposes is in deploy/METRICS.md, and every documented family is exposed;
* the labels on every sample are the documented ones (and none carries a key or prompt text);
* every metric the dashboard (deploy/grafana/hedgeway.json) queries exists, with the labels it uses."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from conftest import MASTER, gateway_config
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "hedgeway.json"
TARGET_LABELS = {"pod", "instance", "job", "namespace", "service", "le"}  # added by Prometheus / histograms
PROMPT = "my secret prompt text 42"


def _post(gw, body: dict) -> int:
    req = urllib.request.Request(gw.base_url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


@pytest.fixture(scope="module")
def scrape(upstream, tmp_path_factory):
    ledger = f"sqlite:///{tmp_path_factory.mktemp('metrics')}/ledger.db"
    cfg = gateway_config(upstream.base_url, ledger, limits={"budgets": [{"limit": "10", "period": "daily"}]},
                         tracing={"endpoint": "http://127.0.0.1:9/v1/traces", "sample_ratio": 0.0})
    cfg["routing"]["shadows"] = [{"model": "gpt-4o-mini", "candidate": "gpt-4o-mini", "share": 1.0,
                                  "embedder": "none"}]
    with BackgroundGateway(from_dict(cfg)) as gw:
        msgs = [{"role": "user", "content": PROMPT}]
        assert _post(gw, {"model": "gpt-4o-mini", "messages": msgs}) == 200
        assert _post(gw, {"model": "gpt-4o-mini", "messages": msgs, "stream": True}) == 200
        assert _post(gw, {"model": "dead", "messages": msgs}) >= 500
        assert _post(gw, {"model": PROMPT, "messages": msgs}) >= 400  # client text never becomes a label
        with urllib.request.urlopen(gw.base_url.removesuffix("/v1") + "/metrics", timeout=10) as resp:
            return resp.read().decode()


def families(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M)}


def sample_labels(text: str) -> dict[str, set[str]]:
    """family -> label names seen on its samples (histogram suffixes folded into the family)."""
    fams = families(text)
    out: dict[str, set[str]] = {}
    for m in re.finditer(r"^([a-zA-Z_:][\w:]*)(?:\{(.*?)\})? \S+$", text, re.M):
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in fams else name
        labels = set(re.findall(r'(\w+)="', m.group(2) or "")) - {"le"}
        out.setdefault(base, set()).update(labels)
    return out


def documented() -> dict[str, tuple[str, set[str]]]:
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \|\s*([\w, ]*?)\s*\|", (ROOT / "deploy" / "METRICS.md").read_text(), re.M)
    return {name: (kind, {x.strip() for x in labels.split(",") if x.strip()}) for name, kind, labels in rows}


def test_every_exposed_family_is_documented_with_its_type_and_labels(scrape):
    doc, fams = documented(), families(scrape)
    assert len(doc) > 20
    assert set(fams) == set(doc), (set(fams) ^ set(doc))
    for name, kind in fams.items():
        assert doc[name][0] == kind, name
    for name, labels in sample_labels(scrape).items():
        assert labels == doc[name][1], name


def test_no_label_carries_client_text_or_keys(scrape):
    assert PROMPT not in scrape and MASTER not in scrape
    assert 'model="(unknown)"' in scrape


def test_llm_queue_depth_is_exposed_per_deployment(scrape):
    assert re.search(r'^llm_queue_depth\{deployment="gpt-4o-mini/openai/ok-mini"\} 0$', scrape, re.M)


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_dashboard_queries_only_metrics_and_labels_the_gateway_exposes(scrape):
    fams, doc = families(scrape), documented()
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    used: set[str] = set()
    for expr in exprs:
        names = set(re.findall(r"\b((?:hedgeway|llm)_\w+)", expr))
        assert names, expr
        labels_here = set()
        for name in names:
            base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in fams else name
            assert base in fams, f"{name} in {expr!r} is not exposed by the gateway"
            if name != base:
                assert fams[base] == "histogram", name
            used.add(base)
            labels_here |= doc[base][1]
        for group in re.findall(r"by \(([^)]*)\)", expr) + re.findall(r"\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=|,|$)", group):
                assert label in labels_here | TARGET_LABELS, f"label {label!r} in {expr!r}"
    # the panels: spend, routes, cache-free latency, errors, budgets, canaries, breakers, queue depth
    assert {"hedgeway_cost_usd_total", "hedgeway_router_requests_total", "hedgeway_ttft_seconds",
            "hedgeway_budget_used_ratio", "hedgeway_canary_state", "hedgeway_breaker_state",
            "llm_queue_depth", "hedgeway_errors_total"} <= used


def test_dashboard_is_importable_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"]
    assert any(v["name"] == "datasource" and v["type"] == "datasource" for v in dash["templating"]["list"])

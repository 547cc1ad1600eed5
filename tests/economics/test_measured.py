"""Capacity measured instead of assumed: decode speed from the ledger's streamed rows, the bench CLI's
curve, and `hedgeway plan --from-ledger --config` planning self-hosted deployments on what was measured."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal as D

import yaml

from hedgeway import pricing
from hedgeway.cli import main
from hedgeway.economics import costmodel as cm
from hedgeway.economics.measured import measured_throughput
from hedgeway.ledger import open_store
from hedgeway.ledger.base import Record
from hedgeway.types import Usage

SELF = "tiny/openai/smollm2"
API = "gpt-4o-mini/openai/gpt-4o-mini"
DAY0 = 1_754_006_400.0


def row(i, dep, completion, latency, ttft, stream=True, status=200, error=None, cost=D(0)):
    return Record(request_id=f"r{i}", ts=DAY0 + i, endpoint="chat", model_name=dep.split("/")[0], deployment=dep,
                  provider="openai", status=status, error_type=error, stream=stream, prompt_tokens=40,
                  completion_tokens=completion, cost=cost, latency_ms=latency, ttft_ms=ttft)


def test_decode_speed_is_tokens_over_the_time_after_the_first_token():
    rows = [row(1, SELF, 100, 1_100.0, 100.0),  # 100 tokens in 1.0 s after the first token
            row(2, SELF, 300, 2_600.0, 600.0),  # 300 in 2.0 s (0.5 s of it waited in the queue: in the TTFT)
            row(3, SELF, 50, 900.0, None, stream=False),  # no TTFT: prefill and decode cannot be told apart
            row(4, SELF, 0, 500.0, 100.0),  # no tokens counted
            row(5, SELF, 10, 700.0, 100.0, error="UpstreamErrorMidStream"),
            row(6, API, 20, 300.0, 100.0)]
    got = measured_throughput(rows)
    assert got[SELF]["output_tokens_per_s"] == round(400 / 3.0, 1) and got[SELF]["requests"] == 2
    assert got[SELF]["ttft_ms_p50"] == 100.0 and got[SELF]["source"] == "ledger"
    assert got[API]["output_tokens_per_s"] == 100.0


def _ledger(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    store = open_store(url)
    store.migrate()
    gpu = pricing.gpu_hour_card(D("1.20"), 1, D("1500"))  # what the config says: 1,500 tokens/s, assumed
    mini = pricing.lookup("openai", "gpt-4o-mini")
    rows = [row(i, SELF, 110, 1_100.0, 100.0, cost=pricing.cost(Usage(40, 110), gpu)) for i in range(20)]
    rows += [row(100 + i, API, 50, 800.0, 300.0, cost=pricing.cost(Usage(40, 50), mini)) for i in range(10)]
    store.write(rows)
    store.close()
    return url, rows


def _config(tmp_path):
    cfg = {"auth": {"master_key": "sk-x"}, "models": [
        {"name": "tiny", "deployments": [{"provider": "openai", "model": "smollm2", "api_base": "http://127.0.0.1:9",
                                          "price": {"gpu_hour": "1.20", "tokens_per_second": 1500}}]},
        {"name": "gpt-4o-mini", "deployments": [{"provider": "openai", "model": "gpt-4o-mini", "api_key": "k"}]}]}
    path = tmp_path / "hedgeway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def plan_json(argv, capsys):
    assert main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_uses_the_measured_throughput_of_self_hosted_deployments(tmp_path, capsys):
    url, rows = _ledger(tmp_path)
    bare = plan_json(["--from-ledger", url], capsys)
    assert bare["measured_throughput"][SELF]["output_tokens_per_s"] == 110.0  # without --config too
    assert bare["self_host"]["tokens_per_s_source"] == "assumed" and bare["self_hosted"] == []
    assert bare["api_options"][0]["name"] == "as logged"
    p = plan_json(["--from-ledger", url, "--config", _config(tmp_path), "--api-model", "gpt-4o-mini"], capsys)
    assert p["self_host"]["profile"] == SELF and p["self_host"]["tokens_per_s"] == 110
    assert p["self_host"]["tokens_per_s_source"] == "measured"
    [sh] = p["self_hosted"]
    assert (sh["deployment"], sh["tokens_per_s"], sh["tokens_per_s_source"]) == (SELF, 110.0, "measured")
    # the self-hosted traffic is compared with what the API would have cost for it, not taken as the API
    mini = pricing.lookup("openai", "gpt-4o-mini")
    api_equivalent = sum((pricing.cost(Usage(r.prompt_tokens, r.completion_tokens), mini) if r.deployment == SELF
                          else r.cost for r in rows), D(0))
    baseline = p["api_options"][0]
    assert baseline["name"] == "as logged (self-hosted traffic at openai/gpt-4o-mini)"
    month = api_equivalent * cm.DAYS_PER_MONTH  # the window is under a day: counted as one day
    assert baseline["monthly_usd"] == f"{month.quantize(D('0.01'), ROUND_HALF_UP):f}"
    assert D(baseline["monthly_usd"]) > D(bare["api_options"][0]["monthly_usd"])  # $1.20/h at 1,500 tok/s is cheap
    assert D(sh["api_monthly_usd"]) > 0 and D(sh["logged_monthly_usd"]) > 0
    assert main(["plan", "--from-ledger", url, "--config", _config(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "110 tokens/s (measured)" in text and "110.0 measured" in text


def test_bench_measures_a_curve_and_the_report_draws_it(tmp_path, capsys):
    cfg = {"auth": {"master_key": "sk-x"}, "models": [{"name": "sim", "deployments": [{
        "provider": "simulated", "model": "sim-1", "price": {"gpu_hour": "1", "tokens_per_second": 100},
        "settings": {"ttft_ms": 5, "tokens_per_second": 2000}}]}]}
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["deployments", "bench", "sim", "--config", str(path), "--concurrency", "1,3",
                 "--max-tokens", "16", "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert "bench sim/simulated/sim-1" in err  # the progress bar, on stderr
    assert result["deployment"] == "sim/simulated/sim-1"
    assert [(lv["concurrency"], lv["requests"], lv["errors"]) for lv in result["levels"]] == [(1, 4, 0), (3, 6, 0)]
    assert all(lv["output_tokens"] > 0 and lv["output_tokens_per_s"] > 0 and lv["ttft_ms_p50"] is not None
               for lv in result["levels"])
    bench = tmp_path / "bench.json"
    bench.write_text(out)
    report = tmp_path / "plan.html"
    p = plan_json(["--bench", str(bench), "--report", str(report)], capsys)
    assert p["measured_throughput"]["sim/simulated/sim-1"]["source"] == "bench"
    assert "Throughput measured" in report.read_text() and "throughput curve of sim/simulated/sim-1" in report.read_text()
    assert main(["deployments", "bench", "nope", "--config", str(path)]) == 2
    assert "known: sim/simulated/sim-1" in capsys.readouterr().err
    assert main(["deployments", "list", "--config", str(path)]) == 0
    assert capsys.readouterr().out.split("\t")[:3] == ["sim/simulated/sim-1", "simulated", "no slot limit"]

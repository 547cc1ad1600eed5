"""`hedgeway plan`: flags, scenario files, --json, --naive, --report, --from-ledger, and clear errors."""

import argparse
import json
from decimal import Decimal as D

import pytest

from hedgeway.cli import plan as plan_cli
from hedgeway.ledger.base import Record

ARTICLE = ["--daily-input-tokens", "10000000", "--daily-output-tokens", "2000000"]
TWO_GPUS = ["--gpu-hourly", "2.10", "--gpus", "2", "--utilisation", "1"]


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="hedgeway")
    plan_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plan", *argv])
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(argv, capsys):
    rc, out, err = run([*argv, "--json"], capsys)
    assert rc == 0, err
    return json.loads(out)


def test_json_pins_the_right_figures(capsys):
    p = run_json([*ARTICLE, "--api-model", "claude-3-5-sonnet", *TWO_GPUS], capsys)
    assert p["schema"] == "hedgeway.plan/1"
    assert p["api_monthly_usd"] == "1800.00" and p["self_host_monthly_usd"] == "3628.80"
    assert p["capacity_tokens_per_day"] == 129_600_000 and p["break_even_tokens_per_day"] == 24_192_000
    assert p["naive"]["break_even_tokens_per_day"] == 22_400_000
    assert isinstance(p["score"], int) and p["tier"] == "api-first"
    mini = p["api_options"][1]
    assert mini["name"] == "openai/gpt-4o-mini" and mini["monthly_usd"] == "81.00"
    assert mini["capacity_break_even"] is None and mini["naive_break_even"] == 504_000_000


def test_naive_flag_reproduces_the_articles_formulas(capsys):
    sonnet = run_json([*ARTICLE, "--api-model", "anthropic/claude-3-5-sonnet", *TWO_GPUS, "--naive"], capsys)
    assert sonnet["mode"] == "naive" and sonnet["break_even_tokens_per_day"] == 22_400_000
    mini = run_json([*ARTICLE, "--api-model", "gpt-4o-mini", *TWO_GPUS, "--naive"], capsys)
    assert mini["api_monthly_usd"] == "81.00" and mini["break_even_tokens_per_day"] == 504_000_000
    capped = run_json([*ARTICLE, "--api-model", "gpt-4o-mini", *TWO_GPUS], capsys)
    assert capped["break_even_tokens_per_day"] is None and "129.6M" in capped["break_even_reason"]


def test_quiz_two_a40_reserved(capsys):
    by_profile = run_json(["--profile", "llama3-70b-4bit-2xa40", "--naive"], capsys)
    assert by_profile["self_host_monthly_usd"] == "1123.20"
    assert by_profile["break_even_tokens_per_day"] == 6_933_333
    by_price = run_json(["--input-price", "3", "--output-price", "15", "--gpu-hourly", "0.65", "--gpus", "2",
                         "--naive"], capsys)
    assert by_price["self_host_monthly_usd"] == "1123.20" and by_price["break_even_tokens_per_day"] == 6_933_333


def test_text_output(capsys):
    rc, out, _ = run([*ARTICLE, "--api-model", "claude-3-5-sonnet", *TWO_GPUS], capsys)
    assert rc == 0
    for text in ("$1,800.00", "$81.00", "$3,628.80", "22.4M", "504M", "never", "7-factor score", "Verdict:"):
        assert text in out


@pytest.mark.parametrize("argv, field", [(["--gpus", "two"], "self_host.gpus"),
                                         (["--api-model", "no-such-model"], "api.model"),
                                         (["--overhead", "-1"], "self_host.overhead"),
                                         (["--factor", "privacy=5"], "factors.privacy"),
                                         (["--factor", "speed=1"], "factors.speed"),
                                         (["--profile", "nope"], "self_host.profile"),
                                         (["--from-ledger", "sqlite:///x.db", "--since", "soon"], "--since")])
def test_bad_input_exits_2_naming_the_field(argv, field, capsys):
    rc, out, err = run(argv, capsys)
    assert rc == 2 and field in err and out == "" and "Traceback" not in err


def test_scenario_file_and_flags_over_it(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("traffic: {daily_input_tokens: 10_000_000, daily_output_tokens: 2_000_000}\n"
                 "api: {model: gpt-4o-mini}\nself_host: {gpu_hourly: '2.10', gpus: 2, utilisation: 1}\n"
                 "factors: {privacy: 2, team: 1}\n")
    p = run_json(["--scenario", str(f)], capsys)
    assert p["api_monthly_usd"] == "81.00" and p["tier"] == "self-host"
    assert p["assessment"]["overrides"] and p["assessment"]["tier_by_score"] == "api-first"
    over = run_json(["--scenario", str(f), "--api-model", "claude-3-5-sonnet"], capsys)
    assert over["api_monthly_usd"] == "1800.00"
    f.write_text("self_host: {gpus: 0}\n")
    rc, _, err = run(["--scenario", str(f)], capsys)
    assert rc == 2 and "self_host.gpus" in err
    rc, _, err = run(["--scenario", str(tmp_path / "missing.yaml")], capsys)
    assert rc == 2 and "cannot read" in err


def test_report_is_self_contained_html(tmp_path, capsys):
    out = tmp_path / "plan.html"
    rc, stdout, _ = run([*ARTICLE, *TWO_GPUS, "--report", str(out)], capsys)
    html = out.read_text(encoding="utf-8")
    assert rc == 0 and "report written" in stdout
    assert html.startswith("<!doctype html>") and html.count("data:image/svg+xml;base64,") >= 2
    assert "<script" not in html and 'src="http' not in html and "<link" not in html
    assert "$1,800.00" in html and "Decision flowchart" in html


def test_list_catalogue(capsys):
    rc, out, _ = run(["--list"], capsys)
    assert rc == 0 and "llama3-8b-1xa10" in out and "A100 80GB" in out and "129.6M" in out


def test_registered_in_the_cli():
    from hedgeway.cli import COMMANDS

    assert COMMANDS["plan"] == "plan"
    parser = argparse.ArgumentParser()
    plan_cli.register(parser.add_subparsers())
    args = parser.parse_args(["plan", "--from-ledger"])
    assert args.func is plan_cli.run and args.from_ledger == "sqlite:///hedgeway.db"


def test_missing_ledger_exits_1(tmp_path, capsys):
    rc, _, err = run(["--from-ledger", f"sqlite:///{tmp_path}/none.db"], capsys)
    assert rc == 1 and "no ledger database" in err


def _open_store():
    """The core's `open_store`, or a skip naming why (the ledger is built by another issue)."""
    ledger = pytest.importorskip("hedgeway.ledger", reason="hedgeway.ledger not available")
    if not hasattr(ledger, "open_store"):
        pytest.skip("hedgeway.ledger.open_store not written yet; the planner is tested from Records directly")
    return ledger.open_store


def test_from_ledger_sqlite(tmp_path, capsys):
    from hedgeway import pricing
    from hedgeway.types import Usage

    open_store = _open_store()
    url = f"sqlite:///{tmp_path}/ledger.db"
    store = open_store(url)
    store.migrate()
    card = pricing.lookup("anthropic", "claude-3-5-sonnet")
    day0 = 1_754_006_400.0
    store.write([Record(request_id=f"r{i}", ts=day0 + i * 9_600, endpoint="chat", model_name="smart",
                        deployment="sonnet", provider="anthropic", status=200, prompt_tokens=1_000_000,
                        completion_tokens=200_000, cost=pricing.cost(Usage(1_000_000, 200_000), card),
                        ttft_ms=300.0, route='{"complexity": "simple"}' if i % 2 else None) for i in range(10)])
    store.close()
    p = run_json(["--from-ledger", url, "--since", "2025-07-01",
                  "--what-if", "simple=self:llama3-8b-1xa10,rest=logged"], capsys)
    assert p["traffic"]["source"] == "ledger" and p["ledger"]["requests"] == 10
    assert p["api_monthly_usd"] == "1800.00" and D(p["ledger"]["spend_usd"]) == D("60.00")
    assert [w["policy"] for w in p["what_if"]] == ["simple → self:llama3-8b-1xa10, rest → logged"]
    assert p["what_if"][0]["monthly_usd"] == "1418.40"  # 5 complex as logged ($900) + one A10 ($518.40)
    rc, out, _ = run(["--from-ledger", url], capsys)
    assert rc == 0 and "What-if" in out and "Ledger: 10 requests" in out

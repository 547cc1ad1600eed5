"""The planner from ledger records (built directly as `Record`s), what-if re-pricing, and the plan."""

from decimal import Decimal as D

import pytest

from hedgeway import pricing
from hedgeway.cli.plan import parse_since
from hedgeway.economics.planner import build_plan, summarise, verdict
from hedgeway.economics.scenario import build_scenario
from hedgeway.economics.whatif import complexity_of, parse_policy, reprice
from hedgeway.errors import ConfigError
from hedgeway.ledger.base import Record
from hedgeway.types import Usage

SONNET = pricing.lookup("anthropic", "claude-3-5-sonnet")
DAY0 = 1_754_006_400.0  # 2025-08-01 00:00 UTC


def rec(i: int, ts: float, prompt: int, completion: int, route: str | None = None, ttft: float | None = None,
        model: str = "smart", deployment: str = "sonnet", status: int = 200) -> Record:
    return Record(request_id=f"r{i}", ts=ts, endpoint="chat", model_name=model, deployment=deployment,
                  provider="anthropic", status=status, prompt_tokens=prompt, completion_tokens=completion,
                  cost=pricing.cost(Usage(prompt, completion), SONNET), ttft_ms=ttft, route=route)


def one_day_of_sonnet() -> list[Record]:
    """10M input + 2M output tokens over exactly one day, half of the requests classed simple."""
    step = 86_400 / 9
    return [rec(i, DAY0 + i * step, 1_000_000, 200_000, route=f"complexity={'simple' if i % 2 else 'complex'}",
                ttft=100.0 * (i + 1)) for i in range(10)]


def test_summarise_window_volume_ratio_spend_and_ttft():
    s = summarise(one_day_of_sonnet())
    assert s.requests == 10 and s.window_days == 1
    assert s.traffic.total == 12_000_000 and s.traffic.output_ratio == D(1) / 6
    assert s.spend == D("60.00") and s.monthly_run_rate == D("1800.00")
    assert s.ttft_ms == {"p50": 500.0, "p95": 1000.0, "p99": 1000.0}
    assert s.simple_share == D("0.5") and s.classified == 10
    assert s.peak_day_tokens == 10_800_000  # 9 requests on the first UTC day, 1 on the next


def test_short_windows_count_as_one_day_and_long_ones_divide():
    short = summarise([rec(0, DAY0, 1000, 0), rec(1, DAY0 + 60, 1000, 0)])
    assert short.window_days == 1 and short.traffic.total == 2000
    week = summarise([rec(0, DAY0, 7000, 0), rec(1, DAY0 + 7 * 86_400, 7000, 0)])
    assert week.window_days == 7 and week.traffic.total == 2000


def test_model_mix_shares():
    recs = [rec(0, DAY0, 300, 0, model="a", deployment="x"), rec(1, DAY0 + 1, 100, 0, model="b", deployment="y")]
    mix = summarise(recs).mix
    assert [(m["model"], m["share"]) for m in mix] == [("a", 0.75), ("b", 0.25)]


@pytest.mark.parametrize("route, cls", [('{"complexity": "Simple", "score": 0.1}', "simple"),
                                        ('{"class": "complex"}', "complex"), ("tier=cheap complexity=medium", "medium"),
                                        ("fallback after: simple-llama (UpstreamTimeout)", None), (None, None),
                                        ("{not json", None)])
def test_complexity_of(route, cls):
    assert complexity_of(rec(0, DAY0, 1, 1, route=route)) == cls


def test_reprice_everything_on_mini_pins_81_dollars():
    recs = one_day_of_sonnet()
    sc = build_scenario({})
    w = reprice(recs, "all=openai/gpt-4o-mini", summarise(recs), sc)
    assert w["monthly"] == D("81.00") and w["self_host_monthly"] == 0 and w["routed_share"] == 1.0
    assert w["policy"] == "everything → openai/gpt-4o-mini"


def test_reprice_simple_to_self_hosted_keeps_the_rest_as_logged():
    recs = one_day_of_sonnet()
    sc = build_scenario({})
    w = reprice(recs, "simple=self:llama3-70b-4bit-2xa40,rest=logged", summarise(recs), sc)
    assert w["api_monthly"] == D("900.00")  # the complex half, as logged
    assert w["self_host_monthly"] == D("1123.20") and w["deployments"] == 1  # 6M/day fits one 2×A40
    assert w["monthly"] == D("2023.20") and w["routed_share"] == 0.5


def test_what_if_policy_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"plan.what_if: .*unknown class 'easy'"):
        parse_policy("easy=self")
    with pytest.raises(ConfigError, match="class=target"):
        parse_policy("simple")
    recs = one_day_of_sonnet()
    with pytest.raises(ConfigError, match="plan.what_if"):
        reprice(recs, "all=no-such-model", summarise(recs), build_scenario({}))


def scenario(**self_host) -> dict:
    return {"traffic": {"daily_input_tokens": 10_000_000, "daily_output_tokens": 2_000_000},
            "api": {"model": "claude-3-5-sonnet"}, "self_host": {"gpu_hourly": "2.10", "gpus": 2, **self_host}}


def test_plan_pins_the_right_figures():
    plan = build_plan(build_scenario(scenario(utilisation=1)))
    sonnet, mini = plan["api_options"]
    assert plan["api_monthly_usd"] == "1800.00" and mini["monthly_usd"] == "81.00"
    assert plan["self_host_monthly_usd"] == "3628.80" and plan["capacity_tokens_per_day"] == 129_600_000
    assert sonnet["naive_break_even"] == 22_400_000 and mini["naive_break_even"] == 504_000_000
    assert plan["naive"]["break_even_tokens_per_day"] == 22_400_000
    assert mini["capacity_break_even"] is None and "129.6M" in mini["reason"]
    assert plan["break_even_tokens_per_day"] == 24_192_000  # capacity mode, the traffic's 1/6 output ratio
    assert plan["mode"] == "capacity" and plan["tier"] == "api-first" and plan["score"] == 1


def test_plan_naive_mode_and_explicit_ratio():
    naive = build_plan(build_scenario({**scenario(), "plan": {"naive": True}}))
    assert naive["mode"] == "naive" and naive["break_even_tokens_per_day"] == 22_400_000
    at_20 = build_plan(build_scenario({**scenario(utilisation=1), "traffic": {
        "daily_input_tokens": 10_000_000, "daily_output_tokens": 2_000_000, "output_ratio": "0.2"}}))
    assert at_20["break_even_tokens_per_day"] == 22_400_000


def test_plan_quiz_profile():
    plan = build_plan(build_scenario({"self_host": {"profile": "llama3-70b-4bit-2xa40"}, "plan": {"naive": True}}))
    assert plan["self_host_monthly_usd"] == "1123.20" and plan["break_even_tokens_per_day"] == 6_933_333
    assert plan["api_monthly_usd"] is None and plan["traffic"]["source"] is None


def test_plan_with_labour_and_by_tier():
    plan = build_plan(build_scenario(scenario(fte=1)))  # default utilisation 0.7: 90.72M/day per deployment
    assert plan["self_host"]["labour_monthly_usd"] == "16666.67"
    assert plan["self_host_monthly_usd"] == "20295.47"
    assert [b["tier"] for b in plan["by_tier"]] == ["api-first", "hybrid", "self-host"]
    # two deployments win at 159.5M/day; at 181.44M a third is needed and the API is cheaper until 183.7M
    assert plan["break_even_tokens_per_day"] == 159_495_112 and plan["deployments"] == 1
    assert plan["capacity"]["sustained_from"] == 183_687_112


def test_plan_from_ledger_records():
    plan = build_plan(build_scenario({}), one_day_of_sonnet())
    assert plan["traffic"]["source"] == "ledger" and plan["api_options"][0]["name"] == "as logged"
    assert plan["api_monthly_usd"] == "1800.00" and plan["ledger"]["requests"] == 10
    assert plan["ledger"]["simple_share"] == 0.5
    policies = {w["policy"]: w for w in plan["what_if"]}
    assert policies["everything → openai/gpt-4o-mini"]["monthly_usd"] == "81.00"
    assert policies["everything → openai/gpt-4o-mini"]["savings_usd"] == "1719.00"
    assert "everything → self" in policies


def test_verdict_paragraph():
    text = verdict(one_day_of_sonnet())
    assert "10 requests" in text and "12M tokens/day" in text and "$1,800.00/month" in text
    assert "tier is api-first" in text and "everything → openai/gpt-4o-mini" in text
    assert "\n" not in text
    assert "no requests" in verdict([])


def test_parse_since():
    assert parse_since("7d", now=1000.0 + 7 * 86_400) == 1000.0
    assert parse_since("90m", now=6000.0) == 600.0
    assert parse_since("2025-08-01") == DAY0
    with pytest.raises(ValueError, match="--since"):
        parse_since("last week")


@pytest.mark.parametrize("raw, path", [({"self_host": {"gpus": "two"}}, "self_host.gpus"),
                                       ({"self_host": {"utilisation": 0}}, "self_host.utilisation"),
                                       ({"traffic": {"daily_input_tokens": -1}}, "traffic.daily_input_tokens"),
                                       ({"api": {"model": "nope"}}, "api.model"),
                                       ({"api": {"input_price": 1}}, "api.output_price"),
                                       ({"self_host": {"profile": "x"}}, "self_host.profile"),
                                       ({"factors": {"privacy": 3}}, "factors.privacy"),
                                       ({"self_host": {"gpuz": 1}}, "self_host.gpuz"),
                                       ({"budget": 1}, "budget"),
                                       ({"profiles": {"mine": {"gpu": "a10"}}}, "profiles.mine.model")])
def test_scenario_errors_name_the_field(raw, path):
    with pytest.raises(ConfigError) as err:
        build_scenario(raw)
    assert err.value.path == path


def test_scenario_overrides_catalogues():
    sc = build_scenario({"gpus": {"a40": {"reserved": "0.50"}},
                         "profiles": {"mine": {"model": "Qwen 7B", "gpu": "a10", "gpus": 1, "tokens_per_s": 900}},
                         "self_host": {"profile": "mine"}})
    assert sc.self_host.name == "mine" and sc.self_host.tokens_per_s == 900
    assert sc.self_host_for("llama3-70b-4bit-2xa40").gpu_hourly == D("0.50")
    assert build_scenario({"api": {"model": "gpt-4o-mini"}}).api.name == "openai/gpt-4o-mini"


def test_what_if_syntax_is_checked_when_the_scenario_loads():
    with pytest.raises(ConfigError) as err:
        build_scenario({"plan": {"what_if": ["all=logged", "simple"]}})
    assert err.value.path == "plan.what_if[1]"


def test_gpu_hourly_overrides_a_missing_catalogue_rate():
    sc = build_scenario({"gpus": {"mygpu": {"on_demand": "2.00"}},
                         "profiles": {"p": {"model": "M", "gpu": "mygpu", "gpus": 1, "tokens_per_s": 100}},
                         "self_host": {"profile": "p", "gpu_hourly": "1.50"}})
    assert sc.self_host.gpu_hourly == D("1.50")
    with pytest.raises(ConfigError) as err:
        build_scenario({"gpus": {"mygpu": {"on_demand": "2.00"}},
                        "profiles": {"p": {"model": "M", "gpu": "mygpu", "gpus": 1, "tokens_per_s": 100}},
                        "self_host": {"profile": "p"}})
    assert err.value.path == "gpus.mygpu.reserved"


def test_plan_with_a_custom_gpu_priced_only_by_flag():
    sc = build_scenario({**scenario(profile="p"), "gpus": {"mygpu": {"on_demand": "2.00"}},
                         "profiles": {"p": {"model": "M", "gpu": "mygpu", "gpus": 1, "tokens_per_s": 100}}})
    plan = build_plan(sc, one_day_of_sonnet())
    assert plan["profiles"][0]["profile"] == "p (customised)"
    assert "p" not in [row["profile"] for row in plan["profiles"][1:]]
    assert plan["what_if"] and plan["by_tier"]

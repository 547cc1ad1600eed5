"""The cost model pins the right figures (PRODUCT.md, Economics), not the seed article's printed ones."""

from decimal import Decimal as D

import pytest

from hedgeway.economics import costmodel as cm
from hedgeway.types import PriceCard

SONNET = PriceCard(D("3.00"), D("15.00"))
MINI = PriceCard(D("0.15"), D("0.60"))
TRAFFIC = cm.Traffic(D(10_000_000), D(2_000_000))  # 10M input + 2M output tokens/day
TWO_GPUS = cm.SelfHost(gpus=2, gpu_hourly=D("2.10"), tokens_per_s=D(1500), utilisation=D(1))
QUIZ = cm.SelfHost(gpus=2, gpu_hourly=D("0.65"), tokens_per_s=D(1500), utilisation=D(1))  # 2 × A40 reserved


def test_api_monthly_cost_sonnet_and_mini():
    assert cm.api_monthly_cost(TRAFFIC, SONNET) == D("1800.00")
    assert cm.api_monthly_cost(TRAFFIC, MINI) == D("81.00")
    assert cm.usd(cm.api_monthly_cost(TRAFFIC, SONNET)) == "$1,800.00"
    assert cm.usd(cm.api_monthly_cost(TRAFFIC, MINI)) == "$81.00"


def test_api_monthly_cost_is_exact_decimal_and_bills_cached_input_at_its_rate():
    cached = cm.Traffic(D(10_000_000), D(2_000_000), D(4_000_000))
    card = PriceCard(D("3.00"), D("15.00"), cached_input=D("0.30"))
    # (6M × 3 + 4M × 0.30 + 2M × 15) / 1M × 30 = (18 + 1.2 + 30) × 30
    assert cm.api_monthly_cost(cached, card) == D("1476.00")
    assert isinstance(cm.api_monthly_cost(cached, card), D)
    # without a cached price, cached input is billed as input
    assert cm.api_monthly_cost(cached, SONNET) == D("1800.00")


def test_self_host_monthly_cost_two_gpus_with_overhead():
    assert cm.self_host_monthly_cost(TWO_GPUS) == D("3628.80")
    assert cm.gpu_monthly_cost(2, D("2.10"), D("0.2")) == D("3628.80")


def test_quiz_two_a40_reserved():
    assert cm.self_host_monthly_cost(QUIZ) == D("1123.20")
    rate = cm.api_rate(SONNET, cm.ARTICLE_OUTPUT_RATIO)
    assert cm.blended_price(SONNET, D("0.2")) == D("5.4")  # the quiz's own split, not its $4.8
    assert cm.naive_break_even(D("1123.20"), rate) == 6_933_333
    assert cm.tokens(cm.naive_break_even(D("1123.20"), rate)) == "6.93M"


def test_naive_break_even_matches_the_articles_formula():
    fixed = cm.self_host_monthly_cost(TWO_GPUS)
    assert cm.naive_break_even(fixed, cm.api_rate(SONNET, D("0.2"))) == 22_400_000
    assert cm.naive_break_even(fixed, cm.api_rate(MINI, D("0.2"))) == 504_000_000
    assert cm.naive_break_even(fixed, D(0)) is None


def test_capacity_of_one_deployment():
    assert cm.capacity_tokens_per_day(D(1500)) == D(129_600_000)
    assert cm.capacity_tokens_per_day(D(1500), D("0.7")) == D(90_720_000)
    assert cm.spec_capacity(TWO_GPUS) == D(129_600_000)


@pytest.mark.parametrize("volume, expected", [(0, 1), (1, 1), (129_600_000, 1), (129_600_001, 2),
                                              (259_200_000, 2), (259_200_001, 3)])
def test_deployments_needed_rounds_up_to_whole_deployments(volume, expected):
    assert cm.deployments_needed(D(volume), D(129_600_000)) == expected


def test_self_host_cost_steps_with_volume():
    assert cm.self_host_monthly_cost(TWO_GPUS, D(129_600_000)) == D("3628.80")
    assert cm.self_host_monthly_cost(TWO_GPUS, D(129_600_001)) == D("7257.60")
    unknown = cm.SelfHost(gpus=2, gpu_hourly=D("2.10"))  # no throughput: fixed bill
    assert cm.self_host_monthly_cost(unknown, D(10**12)) == D("3628.80")


def test_labour_is_added_once():
    spec = cm.SelfHost(gpus=2, gpu_hourly=D("2.10"), tokens_per_s=D(1500), utilisation=D(1), fte=D(1))
    assert cm.labour_monthly_cost(D(1), D(200_000)) == D(200_000) / 12
    assert cm.self_host_monthly_cost(spec, D(200_000_000)) == D("7257.60") + D(200_000) / 12


def test_capacity_break_even_vs_sonnet_at_the_articles_split_is_22_4m():
    be = cm.break_even(TWO_GPUS, cm.api_rate(SONNET, D("0.2")))
    assert be.tokens_per_day == 22_400_000 and be.sustained_from == 22_400_000 and be.deployments == 1


def test_capacity_break_even_uses_the_traffics_own_split():
    be = cm.break_even(TWO_GPUS, cm.api_rate(SONNET, TRAFFIC.output_ratio))  # $5/M blended → 24.192M
    assert be.tokens_per_day == 24_192_000


def test_vs_mini_with_capacity_steps_never_breaks_even_and_says_why():
    be = cm.break_even(TWO_GPUS, cm.api_rate(MINI, D("0.2")))
    assert be.tokens_per_day is None and be.sustained_from is None
    assert "129.6M" in be.reason and "$933.12" in be.reason and "$3,628.80" in be.reason


def test_break_even_above_the_cap_is_never():
    be = cm.break_even(cm.SelfHost(gpus=2, gpu_hourly=D("2.10")), cm.api_rate(MINI, D("0.2")), cap=D(10**8))
    assert be.tokens_per_day is None and "cap" in be.reason
    free = cm.break_even(TWO_GPUS, D(0))
    assert free.tokens_per_day is None and "nothing" in free.reason


def _brute(spec: cm.SelfHost, rate: D, top: int, step: int) -> tuple[int | None, int | None]:
    """First volume (on a grid) where self-hosting is no dearer, and the start of the last winning run."""
    first, run = None, None
    for v in range(step, top, step):
        ok = cm.self_host_monthly_cost(spec, D(v)) <= rate * v
        first = v if ok and first is None else first
        run = (run or v) if ok else None
    return first, run


def test_step_break_even_with_labour_matches_brute_force():
    spec = cm.SelfHost(gpus=2, gpu_hourly=D("2.10"), tokens_per_s=D(1500), utilisation=D("0.7"), fte=D(1))
    rate = cm.api_rate(SONNET, TRAFFIC.output_ratio)
    be = cm.break_even(spec, rate)
    assert be.deployments == 2 and be.tokens_per_day < be.sustained_from  # the API wins again past a step
    first, run = _brute(spec, rate, 400_000_000, 100_000)
    assert abs(first - be.tokens_per_day) < 100_000 and abs(run - be.sustained_from) < 100_000


def test_formatting_helpers():
    assert cm.tokens(129_600_000) == "129.6M" and cm.tokens(504_000_000) == "504M"
    assert cm.tokens(None) == "never" and cm.tokens(950) == "950" and cm.tokens(12_500) == "12.5K"
    assert cm.usd(D("-3.005")) == "-$3.01" and cm.usd(D("1123.2")) == "$1,123.20"

from decimal import Decimal

from hedgeway.pricing import catalogue, cost, lookup
from hedgeway.types import PriceCard, Usage


def test_catalogue_is_dated_and_exact():
    as_of, cards = catalogue()
    assert as_of and all(isinstance(c.input, Decimal) for c in cards.values())
    assert lookup("anthropic", "claude-3-5-sonnet").output == Decimal("15.00")


def test_dated_snapshot_matches_family_by_longest_prefix():
    assert lookup("openai", "gpt-4o-mini-2024-07-18").input == Decimal("0.15")  # not gpt-4o's 2.50
    assert lookup("openai", "gpt-4o-2024-08-06").input == Decimal("2.50")
    assert lookup("openai", "gpt-4omni") is None  # a family prefix must end at a dash
    assert lookup("openai", "unknown-model") is None


def test_cost_prices_each_token_kind_at_its_rate():
    card = PriceCard(input=Decimal("3"), output=Decimal("15"), cached_input=Decimal("0.30"), cache_write=Decimal("3.75"))
    usage = Usage(prompt_tokens=1000, completion_tokens=200, cached_tokens=600, cache_write_tokens=100)
    # 300 plain × 3 + 600 × 0.30 + 100 × 3.75 + 200 × 15, per million
    assert cost(usage, card) == Decimal("0.004455")


def test_cached_tokens_without_cached_price_bill_as_input():
    card = PriceCard(input=Decimal("1"), output=Decimal("2"))
    assert cost(Usage(prompt_tokens=10, completion_tokens=0, cached_tokens=10), card) == Decimal("0.00001")


def test_sums_stay_exact_over_many_requests():
    card = PriceCard(input=Decimal("0.15"), output=Decimal("0.60"))
    total = sum((cost(Usage(prompt_tokens=1, completion_tokens=1), card) for _ in range(100_000)), Decimal(0))
    assert total == Decimal("0.075")

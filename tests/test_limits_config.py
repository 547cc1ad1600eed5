"""The `limits:` config section, UTC periods and the cost estimate (pure functions, no services)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from conftest import gateway_config
from hedgeway.config import from_dict
from hedgeway.errors import ConfigError
from hedgeway.limits import build_admission
from hedgeway.limits.estimate import IMAGE_TOKENS, Estimator, fmt_usd, max_prices, to_units
from hedgeway.limits.periods import bounds, iso
from test_limits_support import FALLBACKS, MODELS


def cfg(limits: dict) -> dict:
    return gateway_config("http://127.0.0.1:9/v1", "sqlite:///:memory:", limits=limits)


@pytest.mark.parametrize("limits, path", [
    ({"alerts": {"treshold": [0.5]}}, "limits.alerts.treshold"),
    ({"alerts": {"thresholds": [80]}}, "limits.alerts.thresholds"),
    ({"budgets": [{"limit": "-1"}]}, "limits.budgets[0].limit"),
    ({"budgets": [{"limit": "5", "period": "yearly"}]}, "limits.budgets[0].period"),
    ({"backend": "memcached"}, "limits.backend"),
    ({"redis": {"url": "os.environ/HW_TEST_UNSET_REDIS_URL"}}, "limits.redis.url"),
    ({"redis": {"url": "http://nope"}}, "limits.redis.url"),
    ({"fail": "maybe"}, "limits.fail"),
    ({"models": {"gpt-4o-mini": {"rpm": 0}}}, "limits.models.gpt-4o-mini.rpm"),
])
def test_bad_limits_name_their_path(limits, path):
    with pytest.raises(ConfigError) as exc:
        from_dict(cfg(limits))
    assert exc.value.path == path


def test_secrets_come_from_the_environment_and_unknown_models_are_refused(monkeypatch):
    monkeypatch.setenv("HW_TEST_REDIS_URL", "redis://:s3cret@127.0.0.1:6379/0")
    config = from_dict(cfg({"backend": "redis", "redis": {"url": "os.environ/HW_TEST_REDIS_URL"}}))
    assert config.limits.redis.url == "redis://:s3cret@127.0.0.1:6379/0"
    assert "s3cret" not in repr(config.limits)
    with pytest.raises(ConfigError) as exc:
        build_admission(from_dict(cfg({"models": {"nope": {"rpm": 1}}})))
    assert exc.value.path == "limits.models.nope"


def _ts(*a) -> float:
    return datetime(*a, tzinfo=timezone.utc).timestamp()


def test_periods_start_in_utc():
    t = _ts(2024, 12, 31, 23, 59, 59)  # a Tuesday
    assert bounds("daily", t) == (_ts(2024, 12, 31), _ts(2025, 1, 1))
    assert bounds("weekly", t) == (_ts(2024, 12, 30), _ts(2025, 1, 6))  # Monday to Monday
    assert bounds("monthly", t) == (_ts(2024, 12, 1), _ts(2025, 1, 1))
    assert bounds("monthly", _ts(2024, 2, 29, 12)) == (_ts(2024, 2, 1), _ts(2024, 3, 1))
    assert bounds("total", t) == (0, None)
    assert iso(int(_ts(2025, 1, 1))) == "2025-01-01T00:00:00Z" and iso(None) == "never"


def test_estimate_is_conservative_and_uses_the_dearest_reachable_deployment():
    est = Estimator(3, 1000)
    body = {"messages": [{"role": "system", "content": "x" * 30},
                         {"role": "user", "content": [{"type": "text", "text": "y" * 9},
                                                      {"type": "image_url", "image_url": {"url": "data:..."}}]}],
            "n": 2}
    # the chat template: 3 per request and 5 per message (a system message is there: no default one)
    assert est.prompt_tokens(body) == 3 + 2 * 5 + 13 + IMAGE_TOKENS
    assert est.output_tokens(body) == (2000, False)  # default max × n
    assert est.output_tokens({"messages": [], "max_completion_tokens": 7, "max_tokens": 99}) == (7, True)
    assert est.prompt_tokens({"input": ["abc", "abcdef"]}) == 2 + 3
    assert est.prompt_tokens({"input": [1, 2, 3, 4]}) == 4
    prices = max_prices(MODELS, FALLBACKS)
    assert prices["cheap"] == prices["pricey"] == (Decimal(10) / 10 ** 6, Decimal(20) / 10 ** 6)
    assert to_units(Decimal("0.0000000001")) == 1  # rounded up to 1e-9 USD, never down
    assert fmt_usd(Decimal("0.40017")) == "$0.40017" and fmt_usd(Decimal(1)) == "$1.00"

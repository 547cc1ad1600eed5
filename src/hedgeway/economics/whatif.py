"""What-if re-pricing: the same logged requests priced as if they had been routed under another policy.

A policy maps the router's request classes to targets, written `class=target,...`:

    classes  simple | medium | complex | unclassified | rest (every class not named) | all (= rest)
    targets  logged (the cost as recorded) | self (the scenario's self-host option) | self:PROFILE |
             an API model from the price catalogue (anthropic/claude-3-5-sonnet, gpt-4o-mini, ...)

e.g. "simple=self:llama3-8b-1xa10,rest=logged" or "all=openai/gpt-4o-mini". API targets are priced per
request from its usage (`hedgeway.pricing.cost`); self-hosted targets cost whole deployments sized for the
tokens/day routed to them (capacity steps included), plus the scenario's labour, per distinct target.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from hedgeway import pricing
from hedgeway.economics import costmodel as cm
from hedgeway.economics.catalog import resolve_api
from hedgeway.errors import ConfigError
from hedgeway.ledger.base import Record
from hedgeway.types import Usage

if TYPE_CHECKING:  # pragma: no cover
    from hedgeway.economics.planner import TrafficStats
    from hedgeway.economics.scenario import Scenario

CLASSES = ("simple", "medium", "complex", "unclassified")
KEYS = (*CLASSES, "rest", "all")
_CLASS_IN_TEXT = re.compile(r"\b(?:complexity|class)\s*[=:]\s*(simple|medium|complex)\b", re.IGNORECASE)


def parse_policy(text: str, path: str = "plan.what_if") -> dict[str, str]:
    """"simple=self:x,rest=logged" → {"simple": "self:x", "rest": "logged"}; ConfigError naming `path`."""
    rules: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, target = (s.strip() for s in part.partition("="))
        if not sep or not target:
            raise ConfigError(path, f"{text!r}: expected class=target, e.g. simple=self:llama3-8b-1xa10,rest=logged")
        if key.lower() not in KEYS:
            raise ConfigError(path, f"{text!r}: unknown class {key!r}; use one of {', '.join(KEYS)}")
        rules["rest" if key.lower() == "all" else key.lower()] = target
    if not rules:
        raise ConfigError(path, "empty what-if policy")
    return rules


def describe(rules: Mapping[str, str]) -> str:
    """{"simple": "self:x", "rest": "logged"} → "simple → self:x, rest → logged" ("everything → t" alone)."""
    if set(rules) == {"rest"}:
        return f"everything → {rules['rest']}"
    return ", ".join(f"{k} → {v}" for k, v in rules.items())


def small_target(scenario: Scenario) -> tuple[str, cm.SelfHost]:
    """Where a hybrid sends simple requests: the cheapest deployment among the scenario's own self-host
    option ("self") and the other priced profiles ("self:NAME"), with its spec."""
    options = [("self", scenario.self_host), *((f"self:{c.name}", c) for c in scenario.candidates())]
    return min(options, key=lambda o: cm.deployment_monthly_cost(o[1]))


def default_policies(scenario: Scenario) -> list[str]:
    """Everything → the cheapest API option, simple → the cheapest self-host profile, everything → self."""
    small = small_target(scenario)[0]
    cheap = min((scenario.api, *scenario.compare), key=lambda o: cm.api_rate(o.card, cm.ARTICLE_OUTPUT_RATIO))
    return [f"all={cheap.name}", f"simple={small},rest=logged", "all=self"]


def complexity_of(record: Record) -> str | None:
    """The router's class for a request ("simple", "medium", "complex") from its `route` field: a JSON
    object with "complexity" (or "class"), or text containing `complexity=<class>` (also `class:<class>`).
    None when the route does not say (e.g. "fallback after: ...")."""
    route = record.route or ""
    if route.startswith("{"):
        try:
            data = json.loads(route)
        except ValueError:
            data = None
        value = data.get("complexity", data.get("class")) if isinstance(data, dict) else None
        return str(value).lower() if value else None
    m = _CLASS_IN_TEXT.search(route)
    return m.group(1).lower() if m else None


def _classify(record: Record) -> str:
    c = complexity_of(record)
    return c if c in CLASSES else "unclassified"


def _card(target: str, scenario: Scenario, path: str) -> pricing.PriceCard:
    """A scenario API option by name, else a catalogue model (ConfigError naming `path` if unknown)."""
    known = {o.name: o.card for o in (scenario.api, *scenario.compare)}
    return known[target] if target in known else resolve_api(target, path).card


@dataclass(slots=True)
class _Bucket:
    """Token and cost totals of one request class (costs are linear in tokens, so totals price exactly)."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    cost: Decimal = Decimal(0)


def _is_self(target: str) -> bool:
    return target == "self" or target.startswith("self:")


def _self_spec(target: str, scenario: Scenario, path: str) -> cm.SelfHost:
    _, _, profile = target.partition(":")
    return scenario.self_host_for(profile, path) if profile else scenario.self_host


def reprice(records: Iterable[Record], policy: str | Mapping[str, str], stats: TrafficStats,
            scenario: Scenario, path: str = "plan.what_if") -> dict[str, Any]:
    """Monthly cost of the logged `records` under `policy`, scaled by `stats.window_days` like the run-rate.

    Returns {policy, monthly, api_monthly, self_host_monthly (Decimal), deployments (int), routed_share
    (fraction of tokens moved off the logged path)}."""
    rules = parse_policy(policy, path) if isinstance(policy, str) else dict(policy)
    # resolve every target first, so a bad one fails even when no request would reach it
    specs = {t: _self_spec(t, scenario, path) for t in rules.values() if _is_self(t)}
    cards = {t: _card(t, scenario, path) for t in rules.values() if t != "logged" and not _is_self(t)}
    buckets: dict[str, _Bucket] = defaultdict(_Bucket)
    for r in records:
        b = buckets[_classify(r)]
        b.prompt += r.prompt_tokens
        b.completion += r.completion_tokens
        b.cached += r.cached_tokens
        b.cost += r.cost
    api_cost, self_tokens, moved, total = Decimal(0), defaultdict(Decimal), 0, 0
    for cls, b in buckets.items():
        target, n = rules.get(cls, rules.get("rest", "logged")), b.prompt + b.completion
        total += n
        if target == "logged":
            api_cost += b.cost
            continue
        moved += n
        if target in specs:
            self_tokens[target] += n
        else:
            api_cost += pricing.cost(Usage(b.prompt, b.completion, b.cached), cards[target])
    days = stats.window_days
    api_monthly = api_cost / days * cm.DAYS_PER_MONTH
    deployments, self_monthly = 0, Decimal(0)
    for target, tokens in self_tokens.items():
        spec, per_day = specs[target], tokens / days
        deployments += cm.deployments_needed(per_day, cm.spec_capacity(spec))
        self_monthly += cm.self_host_monthly_cost(spec, per_day)
    return {"policy": describe(rules), "monthly": api_monthly + self_monthly, "api_monthly": api_monthly,
            "self_host_monthly": self_monthly, "deployments": deployments,
            "routed_share": round(moved / total, 4) if total else 0.0}

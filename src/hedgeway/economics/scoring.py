"""The 7-factor build-vs-buy score → tier, with the overriding constraints, the decision-flowchart path and
the one-page checklist (all from the seed article's tables, kept here as data).

Each factor scores 0 (strong API signal), 1 (neutral / hybrid) or 2 (strong self-host signal); the sum
picks the tier: 0–4 API-first, 5–9 hybrid, 10–14 self-host. Two constraints override the sum ("the
stronger constraint wins"): data that must stay on premises → self-host or a private endpoint; no MLOps
team → not full self-host. Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Mapping

from hedgeway.economics.costmodel import tokens


@dataclass(frozen=True, slots=True)
class Factor:
    title: str
    levels: tuple[str, str, str]  # what 0, 1 and 2 points mean


FACTORS: dict[str, Factor] = {
    "volume": Factor("Daily token volume", ("under 5M tokens/day", "5M–50M tokens/day", "over 50M tokens/day")),
    "latency": Factor("Latency SLA", ("over 500 ms TTFT acceptable", "200–500 ms TTFT",
                                      "under 200 ms TTFT required")),
    "privacy": Factor("Data privacy", ("standard DPA acceptable", "internal data, informal policy",
                                       "regulated; data must not leave the premises")),
    "customisation": Factor("Customisation need", ("prompt engineering suffices", "LoRA adapter suffices",
                                                   "full fine-tune on a proprietary corpus")),
    "team": Factor("Team ML capability", ("no MLOps function, < 2 ML engineers", "small ML team",
                                          "dedicated ML platform team")),
    "budget": Factor("Budget predictability", ("variable spend acceptable", "mixed",
                                               "fixed infrastructure budget")),
    "freshness": Factor("Model freshness", ("need the latest models", "6 months stable acceptable",
                                            "12+ months stable required")),
}

# (highest score of the tier, tier, advice)
TIERS: tuple[tuple[int, str, str], ...] = (
    (4, "api-first", "Use managed APIs; invest in prompts, evals and semantic caching; revisit as volume grows."),
    (9, "hybrid", "Route high-volume simple tasks to a self-hosted model, keep complex ones on the API."),
    (14, "self-host", "Self-host first; keep the API as the safety net for capability gaps."),
)


def tier_for(score: int) -> str:
    """0–4 api-first, 5–9 hybrid, 10–14 self-host."""
    if not 0 <= score <= 14:
        raise ValueError(f"score must be 0..14, got {score}")
    return next(name for top, name, _ in TIERS if score <= top)


def volume_points(tokens_per_day: Decimal) -> int:
    """< 5M → 0, 5M–50M → 1, > 50M → 2 tokens/day."""
    v = Decimal(tokens_per_day)
    return 0 if v < 5_000_000 else 1 if v <= 50_000_000 else 2


def latency_points(sla_ms: Decimal) -> int:
    """TTFT SLA > 500 ms → 0, 200–500 ms → 1, < 200 ms → 2."""
    ms = Decimal(sla_ms)
    return 0 if ms > 500 else 1 if ms >= 200 else 2


@dataclass(frozen=True, slots=True)
class FactorScore:
    name: str
    points: int
    source: str  # "given" | "derived" | "assumed"
    reason: str


@dataclass(frozen=True, slots=True)
class Assessment:
    score: int
    tier_by_score: str
    tier: str  # after the overriding constraints
    factors: list[FactorScore]
    overrides: list[str]
    flowchart: list[str]
    flowchart_tier: str
    checklist: list[dict[str, Any]]
    advice: str = field(default="")


# node -> (question, answer key, next on yes, next on no); leaves -> (tier, label). The seed's flowchart.
FLOW: dict[str, tuple[str, str, str, str]] = {
    "B": ("Daily volume above 50M tokens?", "over_50m", "D", "C"),
    "C": ("PII or PHI in prompts?", "pii", "F", "E"),
    "E": ("Latency SLA under 200ms?", "latency_under_200", "H", "G"),
    "F": ("Data can leave premises?", "data_can_leave", "G", "I"),
    "D": ("Dedicated MLOps team?", "mlops_team", "K", "J"),
    "K": ("Fine-tuning on proprietary corpus needed?", "fine_tune", "L", "J"),
}
LEAVES: dict[str, tuple[str, str]] = {
    "G": ("api-first", "Tier 1 - API Only"),
    "H": ("hybrid", "Tier 2 - Hybrid with vLLM for latency"),
    "I": ("self-host", "Tier 3 - Self-Host or Private Endpoint"),
    "J": ("hybrid", "Tier 2 - Hybrid"),
    "L": ("self-host", "Tier 3 - Self-Host First"),
}

# (question, answer key, recommendation on yes, on no). The seed's one-page checklist.
CHECKLIST: tuple[tuple[str, str, str, str], ...] = (
    ("Do you process > 50M tokens/day on this use case?", "over_50m",
     "Evaluate self-hosting (Tier 2 or 3)", "Start with API (Tier 1)"),
    ("Do you have PII, PHI, or regulated data in prompts?", "pii",
     "Self-host or use private API endpoint (Tier 3)", "API is compliant with standard DPA"),
    ("Can you staff a dedicated MLOps engineer?", "mlops_team",
     "Self-hosting is operationally viable", "API-only; self-hosting ops burden is too high"),
    ("Do you need model behaviours not achievable by prompting alone?", "fine_tune",
     "Fine-tuning required → self-host (Tier 3)", "Prompt engineering + API is sufficient"),
    ("Is your use case latency-sensitive (< 200ms TTFT)?", "latency_under_200",
     "Self-host with vLLM + speculative decoding (Tier 2/3)", "API latency acceptable (Tier 1)"),
    ("Is your token volume predictable month-to-month?", "predictable",
     "Reserved GPU instances; self-host economics are favourable",
     "API with usage alerts; variable billing acceptable"),
    ("Do you need the latest model capabilities as they ship?", "need_latest",
     "Managed API — new models arrive there first (Tier 1)", "Self-host with controlled upgrade cycle viable"),
    ("Is your monthly API bill already above $10K?", "bill_over_10k",
     "Run the cost model; evaluate Tier 2 hybrid", "API economics still favourable"),
    ("Is your eval infrastructure mature and automated?", "evals_mature",
     "Self-hosting without regression detection is risky", "Build evals before self-hosting"),
)


def _derive(name: str, given: Mapping[str, int], derived: Mapping[str, tuple[int, str]]) -> FactorScore:
    if name in given:
        points = int(given[name])
        if points not in (0, 1, 2):
            raise ValueError(f"factor {name}: points must be 0, 1 or 2, got {points}")
        return FactorScore(name, points, "given", FACTORS[name].levels[points])
    if name in derived:
        points, why = derived[name]
        return FactorScore(name, points, "derived", f"{FACTORS[name].levels[points]} ({why})")
    return FactorScore(name, 0, "assumed", f"{FACTORS[name].levels[0]} (not given; assumed)")


def _answers(pts: Mapping[str, int], constraints: Mapping[str, Any],
             api_monthly: Decimal | None) -> dict[str, bool | None]:
    """Yes/no answers to the flowchart and checklist questions: explicit constraints first, else derived
    from the factor points (None: unknown)."""
    on_prem = constraints.get("on_prem")
    on_prem = pts["privacy"] == 2 if on_prem is None else bool(on_prem)
    pick: dict[str, Callable[[], bool | None]] = {
        "over_50m": lambda: pts["volume"] == 2,
        "pii": lambda: constraints.get("pii", on_prem or pts["privacy"] == 2),
        "data_can_leave": lambda: not on_prem,
        "latency_under_200": lambda: pts["latency"] == 2,
        "mlops_team": lambda: constraints.get("mlops_team", pts["team"] >= 1),
        "fine_tune": lambda: pts["customisation"] == 2,
        "predictable": lambda: pts["budget"] >= 1,
        "need_latest": lambda: pts["freshness"] == 0,
        "bill_over_10k": lambda: None if api_monthly is None else Decimal(api_monthly) > 10_000,
        "evals_mature": lambda: constraints.get("evals_mature"),
    }
    return {key: fn() for key, fn in pick.items()}


def walk_flowchart(answers: Mapping[str, bool | None]) -> tuple[list[str], str]:
    """The path through the seed's flowchart (each step "question → yes/no") and the tier it ends in.
    An unknown answer is taken as no."""
    node, path = "B", []
    while node in FLOW:
        question, key, yes, no = FLOW[node]
        answer = bool(answers.get(key))
        path.append(f"{question} → {'yes' if answer else 'no'}")
        node = yes if answer else no
    tier, label = LEAVES[node]
    path.append(label)
    return path, tier


def assess(given: Mapping[str, int] | None = None, *, tokens_per_day: Decimal | None = None,
           latency_sla_ms: Decimal | None = None, ttft_p95_ms: float | None = None,
           api_monthly: Decimal | None = None, constraints: Mapping[str, Any] | None = None) -> Assessment:
    """Score the 7 factors and pick the tier.

    `given` holds explicit points by factor name (they win); when not given, volume is derived from
    `tokens_per_day`, latency from `latency_sla_ms` (a logged `ttft_p95_ms` is quoted against the SLA),
    privacy from `on_prem` and team from `mlops_team`; anything else is assumed 0. `constraints` may set
    `on_prem`, `pii`, `mlops_team`, `evals_mature` (booleans) to answer questions the points cannot.
    Raises ValueError for unknown factors or points."""
    given, constraints = dict(given or {}), dict(constraints or {})
    unknown = sorted(set(given) - set(FACTORS))
    if unknown:
        raise ValueError(f"unknown factor(s) {', '.join(unknown)}; known: {', '.join(FACTORS)}")
    derived: dict[str, tuple[int, str]] = {}
    if tokens_per_day is not None:
        derived["volume"] = (volume_points(tokens_per_day), f"{tokens(tokens_per_day)} tokens/day")
    if latency_sla_ms is not None:
        why = f"SLA {Decimal(latency_sla_ms):f} ms"
        if ttft_p95_ms is not None:
            met = "meets" if ttft_p95_ms <= float(latency_sla_ms) else "misses"
            why += f"; logged p95 TTFT {ttft_p95_ms:.0f} ms {met} it"
        derived["latency"] = (latency_points(latency_sla_ms), why)
    if constraints.get("on_prem"):
        derived["privacy"] = (2, "data must stay on the premises")
    if constraints.get("mlops_team") is not None:
        derived["team"] = (1, "MLOps team in place") if constraints["mlops_team"] else (0, "no MLOps team")
    factors = [_derive(name, given, derived) for name in FACTORS]
    pts = {f.name: f.points for f in factors}
    score = sum(pts.values())
    by_score = tier_for(score)
    answers = _answers(pts, constraints, api_monthly)
    tier, overrides = by_score, []
    if not answers["data_can_leave"]:
        tier = "self-host"
        overrides.append("data must stay on the premises → self-host or a private endpoint, whatever the "
                         "score; the stronger constraint wins")
    if not answers["mlops_team"]:
        if tier == "self-host" and answers["data_can_leave"]:
            tier = "hybrid"
            overrides.append("no MLOps team → not full self-host: hybrid at most")
        elif tier == "self-host":
            overrides.append("no MLOps team: prefer a private managed endpoint inside your network, or "
                             "staff an MLOps engineer before self-hosting")
    path, flow_tier = walk_flowchart(answers)
    checklist = [{"question": q, "answer": _yes_no(answers[key]),
                  "recommendation": "unknown" if answers[key] is None else (yes if answers[key] else no)}
                 for q, key, yes, no in CHECKLIST]
    advice = next(text for _, name, text in TIERS if name == tier)
    return Assessment(score, by_score, tier, factors, overrides, path, flow_tier, checklist, advice)


def _yes_no(answer: bool | None) -> str:
    return "unknown" if answer is None else "yes" if answer else "no"


def assessment_json(a: Assessment) -> dict[str, Any]:
    """The assessment as plain JSON types (see hedgeway.economics.planner for the plan schema)."""
    return {"score": a.score, "tier": a.tier, "tier_by_score": a.tier_by_score, "advice": a.advice,
            "factors": [{"name": f.name, "title": FACTORS[f.name].title, "points": f.points,
                         "source": f.source, "reason": f.reason} for f in a.factors],
            "overrides": a.overrides, "flowchart": a.flowchart, "flowchart_tier": a.flowchart_tier,
            "checklist": a.checklist}


__all__ = ["FACTORS", "TIERS", "Assessment", "FactorScore", "assess", "assessment_json", "latency_points",
           "tier_for", "volume_points", "walk_flowchart"]

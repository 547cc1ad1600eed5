"""7 factors → tier, overriding constraints, flowchart path and checklist."""

from decimal import Decimal as D

import pytest

from hedgeway.economics.scoring import FACTORS, assess, assessment_json, latency_points, tier_for, volume_points

ALL = dict.fromkeys(FACTORS, 0)


@pytest.mark.parametrize("score, tier", [(0, "api-first"), (4, "api-first"), (5, "hybrid"), (9, "hybrid"),
                                         (10, "self-host"), (14, "self-host")])
def test_tier_boundaries(score, tier):
    assert tier_for(score) == tier


def test_tier_rejects_out_of_range():
    with pytest.raises(ValueError):
        tier_for(15)


@pytest.mark.parametrize("volume, points", [(4_999_999, 0), (5_000_000, 1), (50_000_000, 1), (50_000_001, 2)])
def test_volume_points(volume, points):
    assert volume_points(D(volume)) == points


@pytest.mark.parametrize("sla, points", [(800, 0), (501, 0), (500, 1), (200, 1), (199, 2)])
def test_latency_points(sla, points):
    assert latency_points(D(sla)) == points


def test_each_factor_has_points_source_and_reason():
    a = assess({"customisation": 1, "team": 2, "budget": 1, "freshness": 1}, tokens_per_day=D(60_000_000),
               latency_sla_ms=D(150), ttft_p95_ms=420.0)
    by = {f.name: f for f in a.factors}
    assert [f.name for f in a.factors] == list(FACTORS)
    assert by["volume"].points == 2 and by["volume"].source == "derived" and "60M" in by["volume"].reason
    assert by["latency"].points == 2 and "misses" in by["latency"].reason
    assert by["privacy"].source == "assumed" and by["team"].source == "given"
    assert a.score == 9 and a.tier == "hybrid" and a.overrides == []


def test_given_points_win_over_derived():
    a = assess({"volume": 0}, tokens_per_day=D(90_000_000))
    assert a.factors[0].points == 0 and a.factors[0].source == "given"


def test_high_score_with_a_platform_team_is_self_host():
    a = assess({**dict.fromkeys(FACTORS, 2)})
    assert a.score == 14 and a.tier == "self-host"
    assert a.flowchart[-1] == "Tier 3 - Self-Host First" and a.flowchart_tier == "self-host"


def test_data_on_premises_overrides_a_low_score():
    a = assess({**ALL, "privacy": 2, "team": 1})
    assert a.score == 3 and a.tier_by_score == "api-first" and a.tier == "self-host"
    assert "premises" in a.overrides[0]
    assert a.flowchart == ["Daily volume above 50M tokens? → no", "PII or PHI in prompts? → yes",
                           "Data can leave premises? → no", "Tier 3 - Self-Host or Private Endpoint"]


def test_no_mlops_team_caps_self_host_at_hybrid():
    a = assess({"volume": 2, "latency": 2, "privacy": 1, "customisation": 2, "team": 0, "budget": 2,
                "freshness": 2})
    assert a.score == 11 and a.tier_by_score == "self-host" and a.tier == "hybrid"
    assert any("MLOps" in o for o in a.overrides)
    assert a.flowchart[-1] == "Tier 2 - Hybrid"


def test_on_prem_and_no_mlops_keeps_self_host_but_says_private_endpoint():
    a = assess({"privacy": 2}, constraints={"mlops_team": False})
    assert a.tier == "self-host" and "private managed endpoint" in a.overrides[1]


def test_explicit_constraint_can_say_on_prem_without_privacy_points():
    a = assess({}, constraints={"on_prem": True, "mlops_team": True})
    assert a.tier == "self-host" and a.flowchart_tier == "self-host"


def test_flowchart_latency_path_goes_hybrid():
    a = assess({"latency": 2})
    assert a.flowchart[-1] == "Tier 2 - Hybrid with vLLM for latency"


def test_checklist_answers_and_unknowns():
    a = assess({"freshness": 0}, api_monthly=D("12000"), constraints={"evals_mature": True})
    rows = {c["question"]: c for c in a.checklist}
    assert len(a.checklist) == 9
    assert rows["Is your monthly API bill already above $10K?"]["answer"] == "yes"
    assert rows["Is your eval infrastructure mature and automated?"]["answer"] == "yes"
    assert rows["Do you need the latest model capabilities as they ship?"]["recommendation"].startswith("Managed API")
    unknown = {c["question"]: c for c in assess({}).checklist}
    assert unknown["Is your monthly API bill already above $10K?"]["answer"] == "unknown"


def test_bad_factor_input_is_rejected_with_the_name():
    with pytest.raises(ValueError, match="speed"):
        assess({"speed": 1})
    with pytest.raises(ValueError, match="privacy"):
        assess({"privacy": 3})


def test_assessment_json_is_plain_types():
    j = assessment_json(assess({"privacy": 2}))
    assert j["tier"] == "self-host" and j["factors"][2]["title"] == "Data privacy"
    assert set(j) >= {"score", "tier", "tier_by_score", "factors", "overrides", "flowchart", "checklist"}


def test_constraints_derive_their_factors_when_not_given():
    a = assess({}, constraints={"on_prem": True, "mlops_team": False})
    by = {f.name: f for f in a.factors}
    assert (by["privacy"].points, by["privacy"].source) == (2, "derived")
    assert (by["team"].points, by["team"].source) == (0, "derived")
    assert assess({"team": 2}, constraints={"mlops_team": False}).factors[4].points == 2  # given wins

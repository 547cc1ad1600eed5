"""The planner's scenario: one validated, frozen `Scenario` built from a raw nested dict (a YAML scenario
file with command-line flags merged over it). Every bad field raises `ConfigError` naming its path, e.g.
`self_host.gpus: must be an integer >= 1, got 'two'`.

Scenario file (every key optional):

    traffic:     {daily_input_tokens, daily_output_tokens, daily_cached_input_tokens, output_ratio}
    api:         {model, input_price, output_price, cached_input_price, compare: [model, ...]}
    self_host:   {profile, gpu, gpus, gpu_hourly, billing: reserved|on_demand, tokens_per_s,
                  utilisation, overhead, fte, fte_annual_cost}
    plan:        {naive, cap_tokens_per_day, simple_share, what_if: ["simple=self:llama3-8b-1xa10,rest=logged"]}
    factors:     {volume|latency|privacy|customisation|team|budget|freshness: 0|1|2}
    constraints: {on_prem, pii, mlops_team, evals_mature: bool, latency_sla_ms}
    gpus:        {NAME: {label, memory_gb, on_demand, reserved, source}}        # add or override GPUs
    profiles:    {NAME: {model, gpu, gpus, tokens_per_s, source}}               # add or override profiles

Defaults: API anthropic/claude-3-5-sonnet compared with openai/gpt-4o-mini; self-host profile
llama3-70b-4bit-2xa40 at reserved rates, utilisation 0.7, overhead 0.2, no labour (fte 0 at $200,000/year);
break-even cap 10B tokens/day.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any


from hedgeway.economics.catalog import (
    GPU_FIELDS,
    PROFILE_FIELDS,
    ApiOption,
    Gpu,
    Parser,
    Profile,
    as_bool,
    as_choice,
    as_decimal,
    as_int,
    as_mapping,
    as_text,
    as_texts,
    check_fields,
    default_profile,
    gpu_catalogue,
    profile_catalogue,
    resolve_api,
)
from hedgeway.economics.costmodel import DEFAULT_CAP, SelfHost, Traffic
from hedgeway.economics.scoring import FACTORS
from hedgeway.economics.whatif import parse_policy
from hedgeway.config import read_yaml
from hedgeway.errors import ConfigError
from hedgeway.types import PriceCard

MONEY, FRACTION = as_decimal(), as_decimal(Decimal(0), Decimal(1))
SCHEMA: dict[str, dict[str, Parser]] = {
    "traffic": {"daily_input_tokens": as_int(), "daily_output_tokens": as_int(),
                "daily_cached_input_tokens": as_int(), "output_ratio": FRACTION},
    "api": {"model": as_text, "input_price": MONEY, "output_price": MONEY, "cached_input_price": MONEY,
            "compare": as_texts},
    "self_host": {"profile": as_text, "gpu": as_text, "gpus": as_int(1), "gpu_hourly": as_decimal(open_lo=True),
                  "billing": as_choice("reserved", "on_demand"), "tokens_per_s": as_decimal(open_lo=True),
                  "utilisation": as_decimal(Decimal(0), Decimal(1), open_lo=True), "overhead": MONEY,
                  "fte": MONEY, "fte_annual_cost": MONEY},
    "plan": {"naive": as_bool, "cap_tokens_per_day": as_decimal(open_lo=True), "simple_share": FRACTION,
             "what_if": as_texts},
    "factors": {name: as_int(0, 2) for name in FACTORS},
    "constraints": {"on_prem": as_bool, "pii": as_bool, "mlops_team": as_bool, "evals_mature": as_bool,
                    "latency_sla_ms": as_decimal(open_lo=True)},
}
NAMED_SECTIONS: dict[str, dict[str, Parser]] = {"gpus": GPU_FIELDS, "profiles": PROFILE_FIELDS}


def validate(raw: Any) -> dict[str, dict[str, Any]]:
    """Parse a raw scenario dict into typed sections (values absent when not given)."""
    raw = as_mapping(raw, "scenario")
    known = {**SCHEMA, **NAMED_SECTIONS}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(unknown[0], f"unknown section; known: {', '.join(known)}")
    out = {name: check_fields(raw.get(name), schema, name) for name, schema in SCHEMA.items()}
    for name, schema in NAMED_SECTIONS.items():
        section = as_mapping(raw.get(name), name)
        out[name] = {str(k): check_fields(v, schema, f"{name}.{k}") for k, v in section.items()}
    return out


def load_scenario_file(path: str | Path) -> dict:
    """The raw dict of a YAML scenario file (not yet validated); ConfigError when unreadable."""
    return as_mapping(read_yaml(path, "scenario"), "scenario")


@dataclass(frozen=True)
class Scenario:
    """Everything the planner needs, validated. `traffic` is None when no volume was given (the ledger
    may supply it); `output_ratio` is an explicit override of the traffic's own ratio."""

    api: ApiOption
    compare: tuple[ApiOption, ...]
    self_host: SelfHost
    gpus: dict[str, Gpu]
    profiles: dict[str, Profile]
    traffic: Traffic | None = None
    output_ratio: Decimal | None = None
    naive: bool = False
    cap: Decimal = DEFAULT_CAP
    simple_share: Decimal | None = None
    what_if: tuple[str, ...] = ()
    factors: dict[str, int] = field(default_factory=dict)
    constraints: dict[str, Any] = field(default_factory=dict)
    profile: str = ""  # the catalogue profile `self_host` started from

    def candidates(self) -> list[SelfHost]:
        """Every other catalogue profile that has a GPU rate for this billing, as priced options."""
        return [self.self_host_for(name) for name, p in self.profiles.items()
                if name != self.profile and self.self_host.billing in self.gpus.get(p.gpu, _NO_GPU).rates]

    def self_host_for(self, profile: str, path: str = "self_host.profile") -> SelfHost:
        """`profile` priced at this scenario's billing, with its overhead, utilisation and labour."""
        return _profile_spec(self.profiles, self.gpus, profile, self.self_host, path)


_NO_GPU = Gpu("", "", 0, {})


def _profile_spec(profiles: dict[str, Profile], gpus: dict[str, Gpu], name: str, base: SelfHost,
                  path: str, gpu: str | None = None, hourly: Decimal | None = None) -> SelfHost:
    """Profile `name` (optionally on another `gpu`) at the catalogue rate for `base.billing`, or `hourly`."""
    if name not in profiles:
        raise ConfigError(path, f"unknown profile {name!r}; known: {', '.join(sorted(profiles))}")
    p = profiles[name]
    gpu = gpu or p.gpu
    if gpu not in gpus:
        raise ConfigError("self_host.gpu" if path.startswith("self_host") else f"profiles.{name}.gpu",
                          f"unknown GPU {gpu!r}; known: {', '.join(sorted(gpus))}")
    rate = hourly or gpus[gpu].rates.get(base.billing)
    if rate is None:
        raise ConfigError(f"gpus.{gpu}.{base.billing}", "no rate for this billing; give one or --gpu-hourly")
    return replace(base, name=name, model=p.model, gpu=gpu, gpus=p.gpus, gpu_hourly=rate,
                   tokens_per_s=p.tokens_per_s)


def build_scenario(raw: dict) -> Scenario:
    """Validate `raw` (scenario file merged with flags) into a `Scenario`; ConfigError names the bad field."""
    v = validate(raw)
    gpus, profiles = gpu_catalogue(v["gpus"]), profile_catalogue(v["profiles"])
    t, a, s, plan = v["traffic"], v["api"], v["self_host"], v["plan"]
    traffic = None
    if "daily_input_tokens" in t or "daily_output_tokens" in t:
        traffic = Traffic(Decimal(t.get("daily_input_tokens", 0)), Decimal(t.get("daily_output_tokens", 0)),
                          Decimal(t.get("daily_cached_input_tokens", 0)))
        if traffic.daily_cached_input > traffic.daily_input:
            raise ConfigError("traffic.daily_cached_input_tokens", "cannot exceed daily_input_tokens")
    if ("input_price" in a) != ("output_price" in a):
        raise ConfigError("api.output_price" if "input_price" in a else "api.input_price",
                          "input_price and output_price go together")
    if "input_price" in a:
        api = ApiOption(a.get("model", "custom"), PriceCard(a["input_price"], a["output_price"],
                                                            a.get("cached_input_price"), source="scenario"))
    else:
        api = resolve_api(a.get("model", "anthropic/claude-3-5-sonnet"))
    compare = tuple(resolve_api(n, f"api.compare[{i}]")
                    for i, n in enumerate(a.get("compare", ("openai/gpt-4o-mini",))))
    base = SelfHost(gpus=1, gpu_hourly=Decimal(1), utilisation=s.get("utilisation", Decimal("0.7")),
                    overhead=s.get("overhead", Decimal("0.2")), fte=s.get("fte", Decimal(0)),
                    fte_annual_cost=s.get("fte_annual_cost", Decimal(200_000)), billing=s.get("billing", "reserved"))
    name = s.get("profile", default_profile())
    spec = _profile_spec(profiles, gpus, name, base, "self_host.profile", s.get("gpu"), s.get("gpu_hourly"))
    custom = {k: s[k] for k in ("gpus", "gpu_hourly", "tokens_per_s") if k in s}
    if custom or "gpu" in s:
        spec = replace(spec, name=f"{name} (customised)", **custom)
    for i, policy in enumerate(plan.get("what_if", ())):
        parse_policy(policy, f"plan.what_if[{i}]")  # syntax now; targets when re-pricing
    return Scenario(api=api, compare=tuple(c for c in compare if c.name != api.name),
                    self_host=spec, gpus=gpus, profiles=profiles, traffic=traffic,
                    output_ratio=t.get("output_ratio"), naive=plan.get("naive", False),
                    cap=plan.get("cap_tokens_per_day", DEFAULT_CAP), simple_share=plan.get("simple_share"),
                    what_if=plan.get("what_if", ()), factors=dict(v["factors"]),
                    constraints=dict(v["constraints"]), profile=name)

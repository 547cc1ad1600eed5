"""Catalogues as data (GPU options, self-host profiles; API prices come from `hedgeway.pricing`) and the
planner's scenario: one validated, frozen `Scenario` built from a raw nested dict (a YAML scenario file with
command-line flags merged over it). Every bad field raises `ConfigError` naming its path, e.g.
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
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

import yaml

from hedgeway import pricing
from hedgeway.economics.costmodel import DEFAULT_CAP, SelfHost, Traffic
from hedgeway.economics.scoring import FACTORS
from hedgeway.errors import ConfigError
from hedgeway.types import PriceCard

Parser = Callable[[Any, str], Any]


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    label: str
    memory_gb: int
    rates: dict[str, Decimal]  # billing ("reserved" | "on_demand") -> USD per GPU-hour
    source: str = ""


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    model: str
    gpu: str
    gpus: int
    tokens_per_s: Decimal
    source: str = ""


@dataclass(frozen=True, slots=True)
class ApiOption:
    name: str  # "provider/model" from the catalogue, or the name given with explicit prices
    card: PriceCard


# ---- field parsers: (value, path) -> parsed value, or ConfigError naming the path -------------------

def _to_dec(value: Any) -> Decimal | None:
    """A finite Decimal from a YAML/CLI scalar ("10_000_000", "2.10", 0.2), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        d = Decimal(str(value).strip().replace("_", "").replace(",", ""))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _dec(lo: Decimal | None = Decimal(0), hi: Decimal | None = None, open_lo: bool = False) -> Parser:
    def parse(value: Any, path: str) -> Decimal:
        d = _to_dec(value)
        if d is None or (lo is not None and (d <= lo if open_lo else d < lo)) or (hi is not None and d > hi):
            bounds = f"{'>' if open_lo else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
            raise ConfigError(path, f"must be a number {bounds}, got {value!r}")
        return d
    return parse


def _int(lo: int = 0, hi: int | None = None) -> Parser:
    def parse(value: Any, path: str) -> int:
        d = _to_dec(value)
        if d is None or d != d.to_integral_value() or d < lo or (hi is not None and d > hi):
            raise ConfigError(path, f"must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
                              + f", got {value!r}")
        return int(d)
    return parse


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, f"must be a non-empty string, got {value!r}")
    return value.strip()


def _texts(value: Any, path: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(path, f"must be a list of strings, got {value!r}")
    return tuple(_text(v, f"{path}[{i}]") for i, v in enumerate(items))


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {value!r}")
    return value


def _choice(*options: str) -> Parser:
    def parse(value: Any, path: str) -> str:
        v = str(value).replace("-", "_")
        if v not in options:
            raise ConfigError(path, f"must be one of {', '.join(options)}, got {value!r}")
        return v
    return parse


MONEY, FRACTION = _dec(), _dec(Decimal(0), Decimal(1))
GPU_FIELDS: dict[str, Parser] = {"label": _text, "memory_gb": _int(1), "on_demand": _dec(open_lo=True),
                                 "reserved": _dec(open_lo=True), "source": _text}
PROFILE_FIELDS: dict[str, Parser] = {"model": _text, "gpu": _text, "gpus": _int(1),
                                     "tokens_per_s": _dec(open_lo=True), "source": _text}
SCHEMA: dict[str, dict[str, Parser]] = {
    "traffic": {"daily_input_tokens": _int(), "daily_output_tokens": _int(),
                "daily_cached_input_tokens": _int(), "output_ratio": FRACTION},
    "api": {"model": _text, "input_price": MONEY, "output_price": MONEY, "cached_input_price": MONEY,
            "compare": _texts},
    "self_host": {"profile": _text, "gpu": _text, "gpus": _int(1), "gpu_hourly": _dec(open_lo=True),
                  "billing": _choice("reserved", "on_demand"), "tokens_per_s": _dec(open_lo=True),
                  "utilisation": _dec(Decimal(0), Decimal(1), open_lo=True), "overhead": MONEY,
                  "fte": MONEY, "fte_annual_cost": MONEY},
    "plan": {"naive": _bool, "cap_tokens_per_day": _dec(open_lo=True), "simple_share": FRACTION,
             "what_if": _texts},
    "factors": {name: _int(0, 2) for name in FACTORS},
    "constraints": {"on_prem": _bool, "pii": _bool, "mlops_team": _bool, "evals_mature": _bool,
                    "latency_sla_ms": _dec(open_lo=True)},
}
NAMED_SECTIONS: dict[str, dict[str, Parser]] = {"gpus": GPU_FIELDS, "profiles": PROFILE_FIELDS}


def _mapping(value: Any, path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be a mapping, got {type(value).__name__}")
    return value


def _fields(raw: Any, schema: dict[str, Parser], path: str) -> dict[str, Any]:
    raw = _mapping(raw, path)
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}", f"unknown field; known: {', '.join(schema)}")
    return {k: schema[k](v, f"{path}.{k}") for k, v in raw.items() if v is not None}


def validate(raw: Any) -> dict[str, dict[str, Any]]:
    """Parse a raw scenario dict into typed sections (values absent when not given)."""
    raw = _mapping(raw, "scenario")
    known = {**SCHEMA, **NAMED_SECTIONS}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(unknown[0], f"unknown section; known: {', '.join(known)}")
    out = {name: _fields(raw.get(name), schema, name) for name, schema in SCHEMA.items()}
    for name, schema in NAMED_SECTIONS.items():
        out[name] = {str(k): _fields(v, schema, f"{name}.{k}") for k, v in _mapping(raw.get(name), name).items()}
    return out


def load_scenario_file(path: str | Path) -> dict:
    """The raw dict of a YAML scenario file (not yet validated); ConfigError when unreadable."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError("scenario", f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError("scenario", f"{path} is not valid YAML: {exc}") from exc
    return _mapping(raw, "scenario")


def merge(base: dict, over: dict) -> dict:
    """Deep-merge `over` into a copy of `base` (over wins; None values in `over` are ignored)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        elif v is not None:
            out[k] = v
    return out


# ---- catalogues -------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _shipped(name: str) -> dict:
    return yaml.safe_load(files("hedgeway.data").joinpath(name).read_text())


def gpu_catalogue(extra: dict[str, dict] | None = None) -> dict[str, Gpu]:
    """Shipped GPUs (data/gpus.yaml) with `extra` (validated scenario `gpus:` entries) merged over them."""
    raw = {k: _fields(v, GPU_FIELDS, f"gpus.{k}") for k, v in _shipped("gpus.yaml")["gpus"].items()}
    out = {}
    for name, f in merge(raw, extra or {}).items():
        rates = {b: f[b] for b in ("reserved", "on_demand") if b in f}
        out[name] = Gpu(name, f.get("label", name), f.get("memory_gb", 0), rates, f.get("source", "scenario"))
    return out


def profile_catalogue(extra: dict[str, dict] | None = None) -> dict[str, Profile]:
    """Shipped self-host profiles (data/profiles.yaml) with `extra` merged over them."""
    raw = {k: _fields(v, PROFILE_FIELDS, f"profiles.{k}") for k, v in _shipped("profiles.yaml")["profiles"].items()}
    out = {}
    for name, f in merge(raw, extra or {}).items():
        missing = [k for k in ("model", "gpu", "gpus", "tokens_per_s") if k not in f]
        if missing:
            raise ConfigError(f"profiles.{name}.{missing[0]}", "required for a new profile")
        out[name] = Profile(name, f["model"], f["gpu"], f["gpus"], f["tokens_per_s"], f.get("source", "scenario"))
    return out


def default_profile() -> str:
    return str(_shipped("profiles.yaml")["default"])


def resolve_api(name: str, path: str = "api.model") -> ApiOption:
    """A catalogue price card by "provider/model" or a bare model name searched across providers."""
    as_of, cards = pricing.catalogue()
    if "/" in name:
        provider, model = name.split("/", 1)
        card = pricing.lookup(provider, model)
        matches = [name] if card else []
    else:
        matches = sorted(k for k in cards if k.split("/", 1)[1] == name) or sorted(
            (k for k in cards if name.startswith(k.split("/", 1)[1] + "-")), key=len, reverse=True)[:1]
        card = cards[matches[0]] if matches else None
    if card is None:
        raise ConfigError(path, f"no price for {name!r} in the catalogue ({as_of}); give input_price and "
                                f"output_price, or one of: {', '.join(sorted(cards))}")
    if len(matches) > 1:
        raise ConfigError(path, f"{name!r} is ambiguous: {', '.join(matches)}")
    return ApiOption(matches[0], card)


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

    def self_host_for(self, profile: str, path: str = "self_host.profile") -> SelfHost:
        """`profile` priced at this scenario's billing, with its overhead, utilisation and labour."""
        return _profile_spec(self.profiles, self.gpus, profile, self.self_host, path)


def _profile_spec(profiles: dict[str, Profile], gpus: dict[str, Gpu], name: str, base: SelfHost,
                  path: str, gpu: str | None = None) -> SelfHost:
    if name not in profiles:
        raise ConfigError(path, f"unknown profile {name!r}; known: {', '.join(sorted(profiles))}")
    p = profiles[name]
    gpu = gpu or p.gpu
    if gpu not in gpus:
        raise ConfigError("self_host.gpu" if path.startswith("self_host") else f"profiles.{name}.gpu",
                          f"unknown GPU {gpu!r}; known: {', '.join(sorted(gpus))}")
    rate = gpus[gpu].rates.get(base.billing)
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
    spec = _profile_spec(profiles, gpus, name, base, "self_host.profile", s.get("gpu"))
    custom = {k: s[k] for k in ("gpus", "gpu_hourly", "tokens_per_s") if k in s}
    if custom or "gpu" in s:
        spec = replace(spec, name=f"{name} (customised)", **custom)
    return Scenario(api=api, compare=tuple(c for c in compare if c.name != api.name),
                    self_host=spec, gpus=gpus, profiles=profiles, traffic=traffic,
                    output_ratio=t.get("output_ratio"), naive=plan.get("naive", False),
                    cap=plan.get("cap_tokens_per_day", DEFAULT_CAP), simple_share=plan.get("simple_share"),
                    what_if=plan.get("what_if", ()), factors=dict(v["factors"]),
                    constraints=dict(v["constraints"]))

"""Catalogues as data: GPU options (data/gpus.yaml) and self-host profiles (data/profiles.yaml), both
dated defaults that a scenario can override or extend; API prices come from the gateway's own catalogue
(`hedgeway.pricing`, data/prices.yaml). Also the field parsers the scenario uses: each takes
(value, path) and returns the parsed value or raises `ConfigError` naming the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib.resources import files
from typing import Any, Callable

import yaml

from hedgeway import pricing
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

def to_decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a YAML/CLI scalar ("10_000_000", "2.10", 0.2), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        d = Decimal(str(value).strip().replace("_", "").replace(",", ""))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def as_decimal(lo: Decimal | None = Decimal(0), hi: Decimal | None = None, open_lo: bool = False) -> Parser:
    def parse(value: Any, path: str) -> Decimal:
        d = to_decimal(value)
        if d is None or (lo is not None and (d <= lo if open_lo else d < lo)) or (hi is not None and d > hi):
            bounds = f"{'>' if open_lo else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
            raise ConfigError(path, f"must be a number {bounds}, got {value!r}")
        return d
    return parse


def as_int(lo: int = 0, hi: int | None = None) -> Parser:
    def parse(value: Any, path: str) -> int:
        d = to_decimal(value)
        if d is None or d != d.to_integral_value() or d < lo or (hi is not None and d > hi):
            raise ConfigError(path, f"must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
                              + f", got {value!r}")
        return int(d)
    return parse


def as_text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, f"must be a non-empty string, got {value!r}")
    return value.strip()


def as_texts(value: Any, path: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(path, f"must be a list of strings, got {value!r}")
    return tuple(as_text(v, f"{path}[{i}]") for i, v in enumerate(items))


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {value!r}")
    return value


def as_choice(*options: str) -> Parser:
    def parse(value: Any, path: str) -> str:
        v = str(value).replace("-", "_")
        if v not in options:
            raise ConfigError(path, f"must be one of {', '.join(options)}, got {value!r}")
        return v
    return parse


GPU_FIELDS: dict[str, Parser] = {"label": as_text, "memory_gb": as_int(1), "on_demand": as_decimal(open_lo=True),
                                 "reserved": as_decimal(open_lo=True), "source": as_text}
PROFILE_FIELDS: dict[str, Parser] = {"model": as_text, "gpu": as_text, "gpus": as_int(1),
                                     "tokens_per_s": as_decimal(open_lo=True), "source": as_text}
def as_mapping(value: Any, path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be a mapping, got {type(value).__name__}")
    return value


def check_fields(raw: Any, schema: dict[str, Parser], path: str) -> dict[str, Any]:
    raw = as_mapping(raw, path)
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}", f"unknown field; known: {', '.join(schema)}")
    return {k: schema[k](v, f"{path}.{k}") for k, v in raw.items() if v is not None}


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

@cache
def _shipped(name: str) -> dict:
    return yaml.safe_load(files("hedgeway.data").joinpath(name).read_text())


def gpu_catalogue(extra: dict[str, dict] | None = None) -> dict[str, Gpu]:
    """Shipped GPUs (data/gpus.yaml) with `extra` (validated scenario `gpus:` entries) merged over them."""
    raw = {k: check_fields(v, GPU_FIELDS, f"gpus.{k}") for k, v in _shipped("gpus.yaml")["gpus"].items()}
    out = {}
    for name, f in merge(raw, extra or {}).items():
        rates = {b: f[b] for b in ("reserved", "on_demand") if b in f}
        out[name] = Gpu(name, f.get("label", name), f.get("memory_gb", 0), rates, f.get("source", "scenario"))
    return out


def profile_catalogue(extra: dict[str, dict] | None = None) -> dict[str, Profile]:
    """Shipped self-host profiles (data/profiles.yaml) with `extra` merged over them."""
    shipped = _shipped("profiles.yaml")["profiles"]
    raw = {k: check_fields(v, PROFILE_FIELDS, f"profiles.{k}") for k, v in shipped.items()}
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

"""Configuration: YAML validated once, strictly, into runtime types.

Two shapes are accepted: Hedgeway's own (below) and LiteLLM's proxy config (`model_list`, converted by
`config_litellm`). Unknown keys are errors; every error names the path of the bad field, e.g.
`models[0].deployments[1].timeout: Input should be greater than 0`. Secrets are written as
`os.environ/NAME` and resolved here; a missing variable is an error naming the field, never the value.

    server:  {host: 127.0.0.1, port: 8080, workers: 1, max_body_bytes: 4194304,
              head_timeout: 10, body_timeout: 60, idle_timeout: 60, max_connections: 4096}
    auth:    {master_key: os.environ/HEDGEWAY_MASTER_KEY}     # or disabled: true (loopback only)
    ledger:  {url: sqlite:///hedgeway.db, batch_size: 100, flush_interval: 0.02}
    routing: {strategy: least-in-flight, num_retries: 1, retry_backoff: 0.1, fallbacks: {gpt-4o: [gpt-4o-mini]}}
    models:
      - name: gpt-4o
        deployments:
          - {provider: openai, model: gpt-4o, api_key: os.environ/OPENAI_API_KEY, timeout: 60}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from hedgeway.errors import ConfigError
from hedgeway.cache.config import CacheIn
from hedgeway.ledger.responses import ResponsesIn
from hedgeway.limits.config import LimitsIn
from hedgeway.pricing import gpu_hour_card, lookup
from hedgeway.redaction import env_secrets
from hedgeway.routing.config import RouterIn, check_routes
from hedgeway.shadow import ShadowIn, check_shadows
from hedgeway.strict import Strict
from hedgeway.tracing import TracingIn
from hedgeway.types import Deployment, PriceCard

ENV_PREFIX = "os.environ/"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class PriceIn(Strict):
    """Either token prices (USD per million) or a GPU-hour rate amortised over throughput."""

    input: Decimal | None = Field(None, ge=0)
    output: Decimal | None = Field(None, ge=0)
    cached_input: Decimal | None = Field(None, ge=0)
    cache_write: Decimal | None = Field(None, ge=0)
    gpu_hour: Decimal | None = Field(None, ge=0)
    gpus: int = Field(1, ge=1)
    tokens_per_second: Decimal | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self):
        if self.gpu_hour is not None:
            if self.tokens_per_second is None:
                raise ValueError("gpu_hour pricing needs tokens_per_second (sustained throughput)")
        elif self.input is None or self.output is None:
            raise ValueError("give input and output (USD per million tokens), or gpu_hour + tokens_per_second")
        return self

    def card(self) -> PriceCard:
        if self.gpu_hour is not None:
            return gpu_hour_card(self.gpu_hour, self.gpus, self.tokens_per_second)
        return PriceCard(input=self.input, output=self.output, cached_input=self.cached_input,
                         cache_write=self.cache_write, source="config")


class DeploymentIn(Strict):
    provider: str
    model: str
    id: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    timeout: float = Field(60.0, gt=0)
    first_byte_timeout: float | None = Field(None, gt=0)
    weight: float = Field(1.0, gt=0)
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    price: PriceIn | None = None
    headers: dict[str, str] = {}
    settings: dict[str, Any] = {}
    # Slots of the upstream (a self-hosted server's parallel sequences); the surplus waits at the gateway.
    max_concurrency: int | None = Field(None, ge=1)
    queue_timeout: float | None = Field(None, gt=0)  # default 30 s
    max_queue: int | None = Field(None, ge=0)  # default 100; 0: refuse at once when every slot is busy

    @model_validator(mode="after")
    def _queue_needs_slots(self):
        for name in ("queue_timeout", "max_queue"):
            if getattr(self, name) is not None and self.max_concurrency is None:
                raise ValueError(f"{name} applies to the queue of a deployment with max_concurrency; set it")
        return self

    def queue(self) -> dict[str, Any]:
        """The queue fields for `Deployment`, defaults filled in."""
        out: dict[str, Any] = {"max_concurrency": self.max_concurrency}
        if self.queue_timeout is not None:
            out["queue_timeout"] = self.queue_timeout
        if self.max_queue is not None:
            out["max_queue"] = self.max_queue
        return out


class ModelIn(Strict):
    name: str = Field(min_length=1)
    deployments: list[DeploymentIn] = Field(min_length=1)


class ServerIn(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=256)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    head_timeout: float = Field(10.0, gt=0, le=3600)  # request line + headers, from their first byte
    body_timeout: float = Field(60.0, gt=0, le=3600)  # the request body, after its headers
    idle_timeout: float = Field(60.0, gt=0, le=86400)  # a keep-alive connection with no request
    max_connections: int = Field(4096, ge=1)  # per worker; past it a request gets 503 and the close


class AuthIn(Strict):
    master_key: str | None = None
    disabled: bool = False


class LedgerIn(Strict):
    url: str = "sqlite:///hedgeway.db"
    # Small, frequent batches: the writer thread shares the GIL with the event loop, and one big batch
    # of Python row-building shows up in the p99 (measured: ns-c1 p99 2.66 ms at 500/0.25 s, 1.11 ms
    # at 100/0.02 s; bench/results).
    batch_size: int = Field(100, ge=1)
    flush_interval: float = Field(0.02, gt=0)
    # Where batches go while the database is down (replayed once it is back); null: keep them in memory.
    spool_path: str | None = "hedgeway-spool"
    spool_max_bytes: int = Field(256 * 1024 * 1024, ge=4096)
    # Store each request's messages with its record (for `hedgeway eval sample`). Off: prompts are data
    # a team may not be allowed to keep.
    log_prompts: bool = False


class RoutingIn(Strict):
    strategy: Literal["least-in-flight", "weighted"] = "least-in-flight"
    num_retries: int = Field(1, ge=0, le=10)
    retry_backoff: float = Field(0.1, ge=0)
    max_retry_after: float = Field(5.0, ge=0)
    fallbacks: dict[str, list[str]] = {}
    canary_poll: float = Field(1.0, gt=0)  # seconds between reads of the shared canary state
    shadows: list[ShadowIn] = []  # hedgeway.shadow: copies of live requests to candidate models


class ConfigIn(Strict):
    server: ServerIn = ServerIn()
    auth: AuthIn = AuthIn()
    ledger: LedgerIn = LedgerIn()
    routing: RoutingIn = RoutingIn()
    limits: LimitsIn = LimitsIn()
    cache: CacheIn = CacheIn()
    router: RouterIn = RouterIn()
    tracing: TracingIn | None = None
    responses: ResponsesIn = ResponsesIn()  # the /v1/responses store (hedgeway.ledger.responses)
    models: list[ModelIn] = Field(min_length=1)


@dataclass(frozen=True)
class Config:
    """The validated, resolved configuration the gateway runs on."""

    server: ServerIn
    auth: AuthIn
    ledger: LedgerIn
    routing: RoutingIn
    models: dict[str, tuple[Deployment, ...]]
    warnings: tuple[str, ...] = ()
    source: str = "hedgeway"  # or "litellm"
    deployments: dict[str, Deployment] = field(default_factory=dict)
    limits: LimitsIn = field(default_factory=LimitsIn)
    cache: CacheIn = field(default_factory=CacheIn)
    router: RouterIn = field(default_factory=RouterIn)
    tracing: TracingIn | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)  # every credential's value, for redaction.py
    responses: ResponsesIn = field(default_factory=ResponsesIn)


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def resolve_secret(value: str | None, path: str) -> str | None:
    if value is None or not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX):]
    if name not in os.environ:
        raise ConfigError(path, f"environment variable {name} is not set")
    return os.environ[name]


def read_yaml(path: str | Path, field: str = "") -> Any:
    """A YAML file's content; ConfigError (naming `field`) when it cannot be read or parsed."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(field, f"{path} is not valid YAML: {exc}") from None


def load(path: str | Path) -> Config:
    """Read, validate and resolve a config file (either shape). Raises ConfigError."""
    return from_dict(read_yaml(path))


def from_dict(raw: Any) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError("", "the config must be a mapping")
    if "model_list" in raw:
        from hedgeway.config_litellm import convert

        converted, warnings, rename = convert(raw)
        return _build(converted, warnings, rename, source="litellm")
    return _build(raw, [], lambda p: p, source="hedgeway")


def _build(raw: dict, warnings: list[str], rename, source: str) -> Config:
    try:
        cfg = ConfigIn.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(rename(format_loc(err["loc"])), err["msg"]) from None
    from hedgeway.providers import PROVIDERS

    auth = cfg.auth.model_copy(update={"master_key": resolve_secret(cfg.auth.master_key, rename("auth.master_key"))})
    if auth.disabled and cfg.server.host not in LOOPBACK:
        raise ConfigError("auth.disabled", "auth can only be disabled on a loopback host (local demo)")
    if not auth.disabled and not auth.master_key:
        raise ConfigError(rename("auth.master_key"), "a master key is required (or auth.disabled on loopback)")
    models: dict[str, tuple[Deployment, ...]] = {}
    by_id: dict[str, Deployment] = {}
    for i, m in enumerate(cfg.models):
        if m.name in models:
            raise ConfigError(rename(f"models[{i}].name"), f"duplicate model name {m.name!r}")
        deps = []
        for j, d in enumerate(m.deployments):
            here = f"models[{i}].deployments[{j}]"
            provider = PROVIDERS.get(d.provider)
            if provider is None:
                raise ConfigError(rename(f"{here}.provider"),
                                  f"unknown provider {d.provider!r}; known: {', '.join(sorted(PROVIDERS))}")
            settings = provider.validate_settings(d, rename(here))
            price = d.price.card() if d.price else lookup(provider.price_namespace, d.model)
            if price is None:
                price = PriceCard(source="unpriced")
                warnings.append(f"{rename(here)}: no price for {d.provider}/{d.model}; cost recorded as 0 "
                                "(set price: {input, output} or gpu_hour)")
            dep_id = d.id or f"{m.name}/{d.provider}/{d.model}"
            if dep_id in by_id:
                dep_id = f"{dep_id}#{j + 1}"
            dep = Deployment(
                id=dep_id, model_name=m.name, provider=d.provider, model=d.model,
                api_base=(d.api_base or settings.pop("default_api_base", "")).rstrip("/"),
                api_key=resolve_secret(d.api_key, rename(f"{here}.api_key")) or "",
                timeout=d.timeout, first_byte_timeout=d.first_byte_timeout, weight=d.weight,
                rpm=d.rpm, tpm=d.tpm, price=price, settings=settings, headers=dict(d.headers), **d.queue())
            deps.append(dep)
            by_id[dep_id] = dep
        models[m.name] = tuple(deps)
    for name, chain in cfg.routing.fallbacks.items():
        for target in [name, *chain]:
            if target not in models:
                raise ConfigError(rename(f"routing.fallbacks.{name}"), f"unknown model name {target!r}")
    check_routes(cfg.router, models, rename)
    check_shadows(cfg.routing.shadows, models, {r.name for r in cfg.router.routes}, rename)
    tracing = cfg.tracing
    if tracing is not None:
        tracing = tracing.model_copy(update={
            "endpoint": resolve_secret(tracing.endpoint, "tracing.endpoint"),
            "headers": {k: resolve_secret(v, f"tracing.headers.{k}") for k, v in tracing.headers.items()}})
    ledger = cfg.ledger.model_copy(update={"url": resolve_secret(cfg.ledger.url, rename("ledger.url"))})
    cache = cfg.cache.model_copy(update={"redis_url": resolve_secret(cfg.cache.redis_url, rename("cache.redis_url"))})
    secrets = [auth.master_key or "", *env_secrets(raw)]
    secrets += [d.api_key for d in by_id.values()]  # header values count when they come from the environment
    return Config(server=cfg.server, auth=auth, ledger=ledger, routing=cfg.routing, models=models,
                  warnings=tuple(warnings), source=source, deployments=by_id, limits=cfg.limits,
                  cache=cache, router=cfg.router, tracing=tracing, secrets=tuple(s for s in secrets if s),
                  responses=cfg.responses)

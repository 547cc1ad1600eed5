"""The build-vs-buy cost model: pure functions on `Decimal`, no I/O.

Conventions (the seed article's, kept so its figures can be checked): a month is 30 days (720 hours);
prices are USD per million tokens; volumes are tokens per day. Two modes:

* **capacity-aware** (default): a self-hosted deployment (one model replica on `gpus` GPUs) serves at most
  `tokens_per_s × 86,400 × utilisation` tokens/day; more volume needs more whole deployments, so the
  self-host cost is a step function of volume and break-even is solved on the steps.
* **naive** (`naive_break_even`): the article's formulas exactly — a fixed GPU bill, no capacity limit,
  break-even = fixed monthly cost ÷ blended per-token price ÷ 30, truncated to whole tokens.

Money is never rounded here; round only for display (`usd`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from hedgeway.types import MILLION, PriceCard

DAYS_PER_MONTH = Decimal(30)
HOURS_PER_MONTH = Decimal(24) * DAYS_PER_MONTH
SECONDS_PER_DAY = Decimal(86_400)
MONTHS_PER_YEAR = Decimal(12)
DEFAULT_CAP = Decimal(10_000_000_000)  # break-even search stops at 10B tokens/day
ARTICLE_OUTPUT_RATIO = Decimal("0.2")  # the article's default split: 80% input, 20% output


@dataclass(frozen=True, slots=True)
class Traffic:
    """Daily token volumes. `daily_cached_input` is the part of `daily_input` served from a prompt cache."""

    daily_input: Decimal
    daily_output: Decimal
    daily_cached_input: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.daily_input + self.daily_output

    @property
    def output_ratio(self) -> Decimal:
        """Output tokens as a fraction of all tokens (0 when there is no traffic)."""
        return self.daily_output / self.total if self.total else Decimal(0)

    @property
    def cached_share(self) -> Decimal:
        """Cached input as a fraction of input tokens."""
        return self.daily_cached_input / self.daily_input if self.daily_input else Decimal(0)


@dataclass(frozen=True, slots=True)
class SelfHost:
    """One self-hosted option. A *deployment* is one model replica on `gpus` GPUs serving `tokens_per_s`
    (batched, aggregate) — None means unknown, and capacity is then not checked. `fte` engineers at
    `fte_annual_cost` (fully loaded) are added once, whatever the number of deployments."""

    gpus: int
    gpu_hourly: Decimal
    tokens_per_s: Decimal | None = None
    utilisation: Decimal = Decimal(1)
    overhead: Decimal = Decimal("0.2")
    fte: Decimal = Decimal(0)
    fte_annual_cost: Decimal = Decimal(200_000)
    name: str = "custom"
    model: str = ""
    gpu: str = ""
    billing: str = "reserved"


@dataclass(frozen=True, slots=True)
class BreakEven:
    """Where self-hosting becomes no more expensive than the API. `tokens_per_day` is None for never;
    `sustained_from` is where it stays cheaper at every higher volume (capacity steps can make the API
    cheaper again just past a step); `deployments` is the number needed at `tokens_per_day`."""

    tokens_per_day: int | None
    reason: str
    sustained_from: int | None = None
    deployments: int | None = None


def api_monthly_cost(traffic: Traffic, card: PriceCard) -> Decimal:
    """USD/month for `traffic` on `card`: uncached input, cached input (at `cached_input`, else the input
    price) and output, each at its own rate, × 30 days."""
    cached_rate = card.input if card.cached_input is None else card.cached_input
    daily = ((traffic.daily_input - traffic.daily_cached_input) * card.input
             + traffic.daily_cached_input * cached_rate + traffic.daily_output * card.output)
    return daily / MILLION * DAYS_PER_MONTH


def blended_price(card: PriceCard, output_ratio: Decimal) -> Decimal:
    """The article's blended USD per million tokens: (1 − r) × input + r × output."""
    r = Decimal(output_ratio)
    return (1 - r) * card.input + r * card.output


def api_rate(card: PriceCard, output_ratio: Decimal, cached_share: Decimal = Decimal(0)) -> Decimal:
    """USD/month per token/day of volume on `card` at this mix, so that api cost = rate × tokens/day.
    `cached_share` is the fraction of *input* tokens billed at the cached-input price."""
    r, c = Decimal(output_ratio), Decimal(cached_share)
    cached_rate = card.input if card.cached_input is None else card.cached_input
    per_m = (1 - r) * ((1 - c) * card.input + c * cached_rate) + r * card.output
    return per_m / MILLION * DAYS_PER_MONTH


def rate_from_spend(monthly: Decimal, tokens_per_day: Decimal) -> Decimal:
    """The observed rate (USD/month per token/day) of a run-rate at a volume; 0 when there is no volume."""
    return Decimal(monthly) / Decimal(tokens_per_day) if tokens_per_day else Decimal(0)


def gpu_monthly_cost(gpus: int, gpu_hourly: Decimal, overhead: Decimal = Decimal("0.2")) -> Decimal:
    """GPUs × $/h × 720 h × (1 + overhead): the article's self-host formula (overhead: storage, network,
    monitoring as a fraction of GPU cost)."""
    return Decimal(gpus) * Decimal(gpu_hourly) * HOURS_PER_MONTH * (1 + Decimal(overhead))


def labour_monthly_cost(fte: Decimal, annual_cost: Decimal) -> Decimal:
    """Engineering labour: FTE × fully loaded annual cost ÷ 12."""
    return Decimal(fte) * Decimal(annual_cost) / MONTHS_PER_YEAR


def deployment_monthly_cost(spec: SelfHost) -> Decimal:
    """GPU cost of one deployment, overhead included, labour excluded."""
    return gpu_monthly_cost(spec.gpus, spec.gpu_hourly, spec.overhead)


def capacity_tokens_per_day(tokens_per_s: Decimal, utilisation: Decimal = Decimal(1)) -> Decimal:
    """Tokens/day one deployment serves: tokens/s × 86,400 × target utilisation (1,500 tok/s at 100% is
    129.6M/day)."""
    return Decimal(tokens_per_s) * SECONDS_PER_DAY * Decimal(utilisation)


def spec_capacity(spec: SelfHost) -> Decimal | None:
    """Capacity of one deployment of `spec` in tokens/day, or None when its throughput is unknown."""
    return None if spec.tokens_per_s is None else capacity_tokens_per_day(spec.tokens_per_s, spec.utilisation)


def deployments_needed(tokens_per_day: Decimal, capacity: Decimal | None) -> int:
    """ceil(volume ÷ capacity), at least 1 (self-hosting at all means one deployment); 1 when the
    capacity is unknown."""
    if capacity is None or tokens_per_day <= 0:
        return 1
    if capacity <= 0:
        raise ValueError("capacity must be positive")
    return max(1, math.ceil(Decimal(tokens_per_day) / capacity))


def self_host_monthly_cost(spec: SelfHost, tokens_per_day: Decimal | None = None) -> Decimal:
    """USD/month to self-host `tokens_per_day`: deployments needed × one deployment's GPU cost (with
    overhead) + labour. With no volume (or unknown throughput) that is one deployment: the fixed bill."""
    n = deployments_needed(Decimal(tokens_per_day or 0), spec_capacity(spec))
    return n * deployment_monthly_cost(spec) + labour_monthly_cost(spec.fte, spec.fte_annual_cost)


def naive_break_even(self_host_monthly: Decimal, rate: Decimal) -> int | None:
    """The article's break-even: fixed monthly cost ÷ (blended $/token × 30), truncated like its `int()`.
    `rate` is `api_rate(card, output_ratio)` (the article uses output_ratio 0.2). None for a free API."""
    if rate <= 0:
        return None
    return int((Decimal(self_host_monthly) / Decimal(rate)).to_integral_value(ROUND_FLOOR))


def _ceil(x: Decimal) -> int:
    return int(x.to_integral_value(ROUND_CEILING))


def break_even(spec: SelfHost, rate: Decimal, cap: Decimal = DEFAULT_CAP) -> BreakEven:
    """Smallest whole tokens/day at which self-hosting `spec` costs no more than an API at `rate`
    (USD/month per token/day), solved on the capacity step function, or never (with the reason) when
    that volume does not exist or is above `cap`.

    With G = one deployment's monthly cost, L = labour, C = capacity/day: step k (volume in
    ((k−1)C, kC]) costs kG + L. If rate × C ≤ G, a full deployment's traffic is worth less on the API
    than the deployment costs, so no step ever wins. Otherwise the first winning step is
    k = max(1, ⌈L / (rate·C − G)⌉) at volume (kG + L)/rate, and every step from
    k₀ = max(1, ⌈(G + L)/(rate·C − G)⌉) on stays cheaper from (k₀G + L)/rate."""
    g, lab = deployment_monthly_cost(spec), labour_monthly_cost(spec.fte, spec.fte_annual_cost)
    if rate <= 0:
        return BreakEven(None, "the API option costs nothing per token")
    cap_txt = tokens(cap)
    capacity = spec_capacity(spec)
    if capacity is None:
        v = _ceil((g + lab) / rate)
        if v > cap:
            return BreakEven(None, f"break-even would be {tokens(v)}/day, above the {cap_txt}/day cap")
        return BreakEven(v, "fixed cost; throughput unknown, so capacity is not checked", v, 1)
    margin = rate * capacity - g
    if margin <= 0:
        return BreakEven(None, (
            f"one deployment serves at most {tokens(capacity)} tokens/day, which would cost "
            f"{usd(rate * capacity)}/month on the API, no more than the deployment's {usd(g)}/month: "
            "every deployment added costs more than the traffic it takes off the API"))
    k = max(1, math.ceil(lab / margin))
    v = _ceil((k * g + lab) / rate)
    if v > cap:
        return BreakEven(None, f"break-even would be {tokens(v)}/day ({k} deployments), above the "
                               f"{cap_txt}/day cap")
    k0 = max(1, math.ceil((g + lab) / margin))
    sustained = _ceil((k0 * g + lab) / rate)
    reason = f"{k} deployment{'s' if k > 1 else ''} of {tokens(capacity)}/day each"
    if sustained > v:
        reason += (f"; capacity steps make the API cheaper again just past each step until "
                   f"{tokens(sustained)}/day")
    return BreakEven(v, reason, sustained, k)


def usd(amount: Decimal) -> str:
    """Display: "$1,234.56" (rounded half-up to the cent; negative as "-$1.00")."""
    q = Decimal(amount).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"{'-' if q < 0 else ''}${abs(q):,.2f}"


def tokens(n: Decimal | int | None) -> str:
    """Display a token count: 950, 12.5K, 6.93M, 129.6M, 1.2B (trailing zeros dropped); "never" for None."""
    if n is None:
        return "never"
    n = Decimal(n)
    for size, suffix in ((Decimal(10**9), "B"), (Decimal(10**6), "M"), (Decimal(10**3), "K")):
        if abs(n) >= size:
            v = n / size
            places = 1 if abs(v) >= 10 else 2
            text = f"{v.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP):f}"
            text = text.rstrip("0").rstrip(".") if "." in text else text
            return f"{text}{suffix}"
    return f"{n.quantize(Decimal(1), ROUND_HALF_UP):f}"

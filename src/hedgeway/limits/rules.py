"""What admission asks of one (principal, model): the budgets and rate windows that apply, in the store's
terms, worked out once per key and model instead of on every request (admission.py, `Limiter.admit`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hedgeway.errors import PermissionDenied
from hedgeway.limits.config import LimitsIn
from hedgeway.limits.estimate import max_prices, to_units
from hedgeway.types import Budget, Deployment, Principal, RateLimit

MAX_RULES = 4096  # (principal, model) pairs remembered; past it the memo starts afresh


@dataclass(slots=True, frozen=True)
class Rules:
    budgets: tuple[Budget, ...]
    bases: tuple[tuple[str, str, int], ...]  # per budget: (scope, period, limit in units)
    windows: tuple[tuple[str, int, bool], ...]  # per window: (name, limit, counts tokens), rpm before tpm
    items: tuple[str, ...]  # lease items: budgets, then windows, in that order
    price: tuple[Decimal, Decimal]  # max input and output USD per token


class RulesMemo:
    """`rules(principal, model)`: raises PermissionDenied for a model the key may not use; None when nothing
    applies (no budget, no window, no deployment limit). Keyed by the principal object: a key ring reload
    makes new principals, so an edited key never meets its old rules."""

    def __init__(self, cfg: LimitsIn, models: dict[str, tuple[Deployment, ...]], fallbacks: dict[str, list[str]]):
        self.prices = max_prices(models, fallbacks)
        self.global_budgets = tuple(Budget("global", b.limit, b.period) for b in cfg.budgets)
        self.model_limits = {name: (RateLimit(f"model:{name}", r.rpm, r.tpm),) for name, r in cfg.models.items()}
        self.dep_limited = {name for name in models
                            if any(d.rpm or d.tpm for m in (name, *fallbacks.get(name, ())) for d in models[m])}
        self._memo: dict[tuple[int, str], tuple[Principal, Rules | None]] = {}

    def rules(self, principal: Principal, model: str) -> Rules | None:
        got = self._memo.get((id(principal), model))
        if got is not None and got[0] is principal:  # held here, so its id is not reused meanwhile
            return got[1]
        if principal.models is not None and model not in principal.models:
            raise PermissionDenied(f"This key is not allowed to use model '{model}'.", param="model",
                                   code="model_not_allowed")
        if len(self._memo) >= MAX_RULES:
            self._memo.clear()
        rules = self._memo[(id(principal), model)] = (principal, self._build(principal, model))
        return rules[1]

    def _build(self, principal: Principal, model: str) -> Rules | None:
        budgets = principal.budgets + self.global_budgets
        limits = principal.limits + self.model_limits.get(model, ())
        if not budgets and not limits and model not in self.dep_limited:
            return None
        windows = tuple((f"{r.scope}:{kind}", n, kind == "tpm") for r in limits
                        for kind, n in (("rpm", r.rpm), ("tpm", r.tpm)) if n)
        items = tuple(f"b:{b.scope}:{b.period}" for b in budgets) + tuple(f"w:{w[0]}" for w in windows)
        return Rules(budgets, tuple((b.scope, b.period, to_units(b.limit)) for b in budgets), windows, items,
                     self.prices.get(model, (Decimal(0), Decimal(0))))
